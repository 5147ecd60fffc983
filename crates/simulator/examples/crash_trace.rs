//! Prints the trace of a primary crash in a 3-node cluster (handy to read what the core does).
use simulator::{SimConfig, World};

fn main() {
    let mut w = World::new(SimConfig::default());
    w.run_until_cond(60_000, |w| w.writable().len() == 1 && w.nodes.iter().filter(|n| n.pg.streaming).count() == 2);
    w.run_for(3_000);
    let p = w.writable()[0];
    w.crash_node(p);
    w.run_for(20_000);
    w.restart_node(p);
    w.run_for(20_000);
    println!("{}", w.trace.join("\n"));
    println!("counters: {:?}", w.counters);
    println!("steps: {:?}", w.nodes.iter().map(|n| n.steps).collect::<Vec<_>>());
}
