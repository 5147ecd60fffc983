//! End-to-end tests against real PostgreSQL and DCS servers. Filled by issues 4-6 and 9.
