//! The `Dcs` trait over DynamoDB. Filled by issue 5; this crate only compiles for now.
