//! Real network partitions for the chaos runner: every node in its own network namespace,
//! joined to a bridge in the root namespace that carries etcd and the clients, and cut with
//! iptables `DROP` rules inside the node's namespace (packets vanish, so connections hang
//! and time out as on a real network, rather than being refused).
//!
//! Layout for subnet `10.A.B.0/24`: node `i` at `.{i+1}` in namespace `hs<pid>n<i>`; the
//! bridge `hsb<pid>` holds `.254` (the clients' source address) and `.253` (etcd's), so a
//! node can lose etcd while its clients still reach it. Needs root, `ip` and `iptables`;
//! [`Net::available`] says whether this machine has them. Dropping the [`Net`] removes
//! everything it made; [`Net::create`] first removes what a dead earlier run left.

use std::process::Command;

/// Who a node talks to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Peer {
    /// Another node.
    Node(usize),
    /// The etcd server.
    Etcd,
}

/// The namespaces and bridge of one run.
pub struct Net {
    pid: u32,
    subnet: String,
    nodes: usize,
}

fn run(args: &[&str]) -> Result<(), String> {
    let out = Command::new(args[0]).args(&args[1..]).output().map_err(|e| format!("{}: {e}", args[0]))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("`{}` failed: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim()))
    }
}

fn alive(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}

impl Net {
    /// Whether namespaces and iptables work here (root, `ip`, `iptables`, kernel support).
    pub fn available() -> Result<(), String> {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            return Err("network namespaces need root".into());
        }
        let probe = format!("hsprobe{}", std::process::id());
        run(&["ip", "netns", "add", &probe])?;
        let r = run(&["ip", "netns", "exec", &probe, "iptables", "-A", "OUTPUT", "-d", "10.0.0.1", "-j", "DROP"]);
        let _ = run(&["ip", "netns", "del", &probe]);
        r.map_err(|e| format!("iptables in a namespace does not work ({e}); Debian: apt-get install iptables"))
    }

    /// Makes the bridge and one namespace per node.
    pub fn create(nodes: usize) -> Result<Net, String> {
        Self::clean_stale();
        let pid = std::process::id();
        let subnet = format!("10.{}.{}", 100 + (pid >> 8) % 100, pid % 256);
        let net = Net { pid, subnet, nodes };
        let br = net.bridge();
        run(&["ip", "link", "add", &br, "type", "bridge"])?;
        run(&["ip", "addr", "add", &format!("{}/24", net.client_ip()), "dev", &br])?;
        run(&["ip", "addr", "add", &format!("{}/24", net.etcd_ip()), "dev", &br])?;
        run(&["ip", "link", "set", &br, "up"])?;
        for i in 0..nodes {
            let (ns, veth) = (net.ns(i), format!("hsv{pid}n{i}"));
            run(&["ip", "netns", "add", &ns])?;
            run(&["ip", "link", "add", &veth, "type", "veth", "peer", "name", "eth0", "netns", &ns])?;
            run(&["ip", "link", "set", &veth, "master", &br, "up"])?;
            run(&["ip", "netns", "exec", &ns, "ip", "addr", "add", &format!("{}/24", net.node_ip(i)), "dev", "eth0"])?;
            run(&["ip", "netns", "exec", &ns, "ip", "link", "set", "eth0", "up"])?;
            run(&["ip", "netns", "exec", &ns, "ip", "link", "set", "lo", "up"])?;
        }
        Ok(net)
    }

    /// Removes namespaces and bridges of runs whose process is gone.
    fn clean_stale() {
        let Ok(out) = Command::new("ip").args(["netns", "list"]).output() else { return };
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            let name = line.split_whitespace().next().unwrap_or("");
            let Some(rest) = name.strip_prefix("hs") else { continue };
            let Some((pid, _)) = rest.split_once('n') else { continue };
            if pid.parse::<u32>().is_ok_and(|p| !alive(p)) {
                let _ = run(&["ip", "netns", "del", name]);
                let _ = run(&["ip", "link", "del", &format!("hsb{pid}")]);
            }
        }
    }

    fn bridge(&self) -> String {
        format!("hsb{}", self.pid)
    }

    /// Node `i`'s namespace name.
    pub fn ns(&self, i: usize) -> String {
        format!("hs{}n{i}", self.pid)
    }

    /// Node `i`'s address.
    pub fn node_ip(&self, i: usize) -> String {
        format!("{}.{}", self.subnet, i + 1)
    }

    /// etcd's address (on the bridge, in the root namespace).
    pub fn etcd_ip(&self) -> String {
        format!("{}.253", self.subnet)
    }

    /// The clients' address (the bridge's first, so connections from here come from it).
    pub fn client_ip(&self) -> String {
        format!("{}.254", self.subnet)
    }

    fn ip_of(&self, p: Peer) -> String {
        match p {
            Peer::Node(j) => self.node_ip(j),
            Peer::Etcd => self.etcd_ip(),
        }
    }

    fn rule(&self, node: usize, args: Vec<String>) -> Result<(), String> {
        let ns = self.ns(node);
        let mut cmd = vec!["ip", "netns", "exec", &ns, "iptables", "-A"];
        cmd.extend(args.iter().map(String::as_str));
        run(&cmd)
    }

    /// Drops every packet node `i` sends to `to` (a one-way cut: `to` still reaches `i`,
    /// but gets no answer over TCP).
    pub fn drop_to(&self, i: usize, to: Peer) -> Result<(), String> {
        let ip = self.ip_of(to);
        self.rule(i, ["OUTPUT", "-d", &ip, "-j", "DROP"].map(String::from).to_vec())
    }

    /// Drops every packet node `i` receives from `from`.
    pub fn drop_from(&self, i: usize, from: Peer) -> Result<(), String> {
        let ip = self.ip_of(from);
        self.rule(i, ["INPUT", "-s", &ip, "-j", "DROP"].map(String::from).to_vec())
    }

    /// Cuts node `i` from `other` both ways.
    pub fn cut(&self, i: usize, other: Peer) -> Result<(), String> {
        self.drop_to(i, other)?;
        self.drop_from(i, other)
    }

    /// Cuts node `i` from etcd and every other node (its clients still reach it).
    pub fn isolate(&self, i: usize) -> Result<(), String> {
        self.cut(i, Peer::Etcd)?;
        for j in (0..self.nodes).filter(|&j| j != i) {
            self.cut(i, Peer::Node(j))?;
        }
        Ok(())
    }

    /// Removes every rule.
    pub fn heal(&self) -> Result<(), String> {
        for i in 0..self.nodes {
            run(&["ip", "netns", "exec", &self.ns(i), "iptables", "-F"])?;
        }
        Ok(())
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        for i in 0..self.nodes {
            let _ = run(&["ip", "netns", "del", &self.ns(i)]);
        }
        let _ = run(&["ip", "link", "del", &self.bridge()]);
    }
}
