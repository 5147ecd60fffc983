simulator::fast_allocator!();
fn main() {
    let args: Vec<u64> = std::env::args().skip(1).map(|a| a.parse().unwrap()).collect();
    let mut r = Vec::new();
    let mut wr = Vec::new();
    for seed in args[0]..args[1] {
        let p = simulator::Params::from_seed(seed, 3_600_000, None);
        let (_, w) = simulator::run(p);
        r.push((w.max_r, seed));
        wr.push((w.max_w, seed));
    }
    r.sort();
    wr.sort();
    println!("reads {:?}", &r[r.len().saturating_sub(6)..]);
    println!("writes {:?}", &wr[wr.len().saturating_sub(6)..]);
    println!("median r {:?} w {:?}", r[r.len() / 2], wr[wr.len() / 2]);
}
