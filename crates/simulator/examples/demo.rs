//! A 3-node cluster in the simulator, driven by the real decision core: bootstrap, a crash
//! of the primary, the failover, the old primary rejoining, then a planned switchover.
//! Prints what happened and writes a timeline picture to `demo.svg`.
//!
//! Run: `cargo run --release -p simulator --example demo`

use simulator::{Fault, FaultKind, Params, Target, World};

fn main() {
    let mut p = Params::quiet(7, 3);
    p.keep_trace = true;
    p.write_rate = 50;
    let mut w = World::new(p);
    let up = w.run_until_cond(60_000, World::converged).expect("bootstrap");
    println!("bootstrapped in {:.1} s: {} leads", up as f64 / 1e3, w.nodes[w.writable()[0]].name);
    w.run_for(10_000);

    let at = w.now;
    let old = w.writable()[0];
    w.inject(Fault { at, dur: 20_000, kind: FaultKind::Crash(Target::Node(old)) });
    let gap = w.run_until_cond(60_000, |w| w.writable().len() == 1).expect("failover");
    println!(
        "{} crashed; {} accepts writes {:.1} s later",
        w.nodes[old].name,
        w.nodes[w.writable()[0]].name,
        gap as f64 / 1e3
    );
    w.run_until_cond(90_000, |w| w.nodes[old].up && w.nodes[old].pg.streaming && w.converged()).expect("rejoin");
    println!("{} is back and streaming from {}", w.nodes[old].name, w.nodes[w.writable()[0]].name);

    w.run_for(5_000);
    let at = w.now;
    w.inject(Fault { at, dur: 0, kind: FaultKind::Switchover { to: Some(Target::Node(old)), from: None, delay: 0 } });
    let t = w.run_until_cond(60_000, |w| w.writable() == vec![old]).expect("switchover");
    println!("switchover back to {} done in {:.1} s", w.nodes[old].name, t as f64 / 1e3);
    w.run_until_cond(60_000, World::converged).expect("converged");
    w.run_for(5_000);

    println!("\nwhat each node decided, and why (the trace):");
    for e in w.trace.lines().iter().filter_map(|l| simulator::trace::parse_line(l)) {
        let fields: Vec<String> =
            e.fields.iter().filter(|(_, v)| !v.is_empty()).map(|(k, v)| format!("{k}: {v}")).collect();
        println!("{:>8.1}s  {:<10} {}", e.t as f64 / 1e3, e.kind, fields.join(", "));
    }
    println!(
        "\n{} writes acknowledged, {} lost at the failover (asynchronous replication), {} violations of S1-S5",
        w.acked_total, w.check.async_lost, w.check.violation_count
    );
    std::fs::write("demo.svg", simulator::svg::render(&w)).expect("write demo.svg");
    println!("timeline picture: demo.svg");
}
