//! Role-change callbacks with real PostgreSQL: the recipe of `docs/callbacks.md` keeps an
//! address on the primary's loopback interface. Each node runs in its own network
//! namespace, so the address really moves from one interface to another. The daemons run
//! as `postgres` with `CAP_NET_ADMIN` as an ambient capability, as a systemd unit with
//! `AmbientCapabilities=CAP_NET_ADMIN` would run them.

use e2e::netns::Net;
use hashell::local::{LocalCluster, LocalOptions, FAST_SETTINGS};
use std::process::Command;
use std::time::{Duration, Instant};

const VIP: &str = "192.0.2.80";

/// The nodes whose loopback interface holds the address.
fn holders(net: &Net, nodes: usize) -> Vec<usize> {
    (0..nodes)
        .filter(|&i| {
            let out = Command::new("ip")
                .args(["netns", "exec", &net.ns(i), "ip", "-o", "addr", "show", "dev", "lo"])
                .output()
                .expect("ip runs");
            String::from_utf8_lossy(&out.stdout).contains(&format!("inet {VIP}/32"))
        })
        .collect()
}

fn wait<T>(
    what: &str,
    limit: Duration,
    c: &LocalCluster,
    log: &std::path::Path,
    mut f: impl FnMut() -> Option<T>,
) -> T {
    let t0 = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        if t0.elapsed() > limit {
            panic!(
                "timed out after {limit:?} waiting for {what}\n{}\ncallbacks:\n{}",
                c.table(),
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_callback_keeps_an_address_on_the_primary_through_a_crash_and_a_fence() {
    Net::available().expect("this test needs network namespaces");
    let net = Net::create(3).expect("namespaces");
    let etcd = backend_etcd::server::EtcdServer::try_start_on(&net.etcd_ip(), &[]).expect("etcd");
    let root = std::env::temp_dir().join(format!("hashell-callbacks-{}", std::process::id()));
    let script = std::env::temp_dir().join(format!("hashell-vip-{}.sh", std::process::id()));
    let log = root.join("callbacks.log");
    let ip =
        ["/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip"].into_iter().find(|p| std::path::Path::new(p).exists()).expect("ip");
    // Patroni's arguments: <event> <role> <cluster>. The address goes with the role.
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\n\
             echo \"$HA_NODE $1 $2 $3 term=$HA_TERM leader=$HA_LEADER\" >> {log}\n\
             case \"$1:$2\" in\n\
             on_start:primary|on_role_change:primary) exec {ip} addr replace {VIP}/32 dev lo ;;\n\
             *) {ip} addr del {VIP}/32 dev lo 2>/dev/null; exit 0 ;;\n\
             esac\n",
            log = log.display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let cb = script.display();
    let opts = LocalOptions {
        settings: FAST_SETTINGS.into(),
        netns: (0..3).map(|i| (net.ns(i), net.node_ip(i))).collect(),
        ambient_caps: vec!["net_admin".into()],
        rest: format!(
            "[callbacks]\non_start = \"{cb}\"\non_stop = \"{cb}\"\non_role_change = \"{cb}\"\non_fence = \"{cb}\"\ntimeout = \"10s\"\n"
        ),
        log_level: "info,hashell=debug".into(),
        ..LocalOptions::new(e2e::daemon_exe(), e2e::pg_bin(), &etcd.endpoint())
    };
    let mut c = LocalCluster::create(root.clone(), &opts).unwrap_or_else(|e| panic!("{e}"));
    let exe = e2e::daemon_exe();
    for i in 0..3 {
        c.start_daemon(i, &exe).unwrap();
    }
    let long = Duration::from_secs(120);
    let p = wait("a healthy cluster", long, &c, &log, || hashell::demo::healthy(&c));
    wait("the address on the primary only", Duration::from_secs(30), &c, &log, || {
        (holders(&net, 3) == vec![p]).then_some(())
    });

    // 1. The primary's node crashes (daemon, guard and PostgreSQL SIGKILLed). Nothing runs
    //    its callback: the address stays on its interface until its daemon starts again.
    c.kill_node(p);
    let q = wait("a new primary", long, &c, &log, || c.primaries().into_iter().find(|&i| i != p));
    wait("the address on the new primary", Duration::from_secs(30), &c, &log, || {
        holders(&net, 3).contains(&q).then_some(())
    });
    c.start_daemon(p, &exe).unwrap();
    wait("the address on the new primary only", Duration::from_secs(60), &c, &log, || {
        (holders(&net, 3) == vec![q]).then_some(())
    });
    wait("the old primary streaming again", long, &c, &log, || (hashell::demo::healthy(&c) == Some(q)).then_some(()));

    // 2. The new primary is cut from etcd and its peers: it fences at its lease deadline,
    //    on_fence drops the address at once, and the next primary takes it.
    net.isolate(q).unwrap();
    let r = wait("a third primary", long, &c, &log, || c.primaries().into_iter().find(|&i| i != q));
    wait("the address on the third primary only", Duration::from_secs(30), &c, &log, || {
        (holders(&net, 3) == vec![r]).then_some(())
    });
    net.heal().unwrap();

    let text = std::fs::read_to_string(&log).unwrap();
    let (pn, qn, rn) = (&c.nodes[p].name, &c.nodes[q].name, &c.nodes[r].name);
    // In the order things happened, with Patroni's arguments (the cluster is "local").
    let lines: Vec<&str> = text.lines().collect();
    let mut from = 0;
    for (what, needle) in [
        ("the first primary's start", format!("{pn} on_start primary local")),
        ("the promotion after the crash", format!("{qn} on_role_change primary local")),
        ("the crashed node's stop when its daemon starts again", format!("{pn} on_stop replica local")),
        ("the crashed node back as a replica", format!("{pn} on_start replica local")),
        ("the fence of the isolated primary", format!("{qn} on_fence primary local")),
        ("the promotion after the fence", format!("{rn} on_role_change primary local")),
    ] {
        match lines[from..].iter().position(|l| l.starts_with(&needle)) {
            Some(k) => from += k + 1,
            None => panic!("no {what} ({needle:?}) after line {from}:\n{text}"),
        }
    }
    // The fenced node did not say it stopped before it said it fences.
    let fence = lines.iter().position(|l| l.starts_with(&format!("{qn} on_fence"))).unwrap();
    assert!(!lines[..fence].iter().any(|l| l.starts_with(&format!("{qn} on_stop primary"))), "{text}");
    // A promotion's line carries the new term and names the node itself as leader.
    let promoted = lines.iter().find(|l| l.starts_with(&format!("{rn} on_role_change primary"))).unwrap();
    assert!(promoted.ends_with(&format!("leader={rn}")) && !promoted.contains("term=0 "), "{promoted}");
    let _ = std::fs::remove_file(&script);
}
