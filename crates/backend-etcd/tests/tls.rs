//! TLS to etcd: server verified against a CA, client certificate required.

use backend_etcd::testing::{EtcdHarness, EtcdServer, TlsFiles};
use backend_etcd::{EtcdDcs, EtcdTls};
use hacore::dcs::Dcs;
use rcgen::{BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose, IsCa, KeyPair, SanType};
use std::path::Path;
use std::sync::Arc;

fn make_pki(dir: &Path) -> TlsFiles {
    let ca_key = KeyPair::generate().expect("ca key");
    let mut ca = CertificateParams::new(Vec::<String>::new()).expect("ca params");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca.self_signed(&ca_key).expect("ca cert");
    let issue = |client: bool| {
        let key = KeyPair::generate().expect("key");
        let mut p = CertificateParams::new(vec!["localhost".to_string()]).expect("params");
        p.subject_alt_names.push(SanType::IpAddress("127.0.0.1".parse().expect("ip")));
        p.extended_key_usages =
            vec![if client { ExtendedKeyUsagePurpose::ClientAuth } else { ExtendedKeyUsagePurpose::ServerAuth }];
        let cert = p.signed_by(&key, &ca_cert, &ca_key).expect("sign");
        (cert.pem(), key.serialize_pem())
    };
    let (sc, sk) = issue(false);
    let (cc, ck) = issue(true);
    let files = TlsFiles {
        ca: dir.join("ca.pem"),
        server_cert: dir.join("server.pem"),
        server_key: dir.join("server-key.pem"),
        client_cert: dir.join("client.pem"),
        client_key: dir.join("client-key.pem"),
    };
    for (path, pem) in [
        (&files.ca, ca_cert.pem()),
        (&files.server_cert, sc),
        (&files.server_key, sk),
        (&files.client_cert, cc),
        (&files.client_key, ck),
    ] {
        std::fs::write(path, pem).expect("write pem");
    }
    files
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tls_with_client_certificates() {
    let server = Arc::new(EtcdServer::start_tls(make_pki));
    let h = EtcdHarness::fresh(&server);
    let files = server.tls().expect("tls").clone();
    let read = |p: &Path| std::fs::read(p).expect("read pem");
    let clock = Arc::new(backend_etcd::clock::BootClock);

    let mut cfg = h.config("a", &server.endpoint());
    cfg.timeout = std::time::Duration::from_secs(2);
    cfg.tls = Some(EtcdTls {
        ca_pem: Some(read(&files.ca)),
        client_cert_pem: Some(read(&files.client_cert)),
        client_key_pem: Some(read(&files.client_key)),
        domain: None,
    });
    let a = EtcdDcs::connect(&cfg, clock.clone()).await.expect("connect over TLS");
    a.read().await.expect("read over TLS");

    // Without a client certificate etcd refuses the connection.
    let mut no_cert = cfg.clone();
    no_cert.tls = Some(EtcdTls { ca_pem: Some(read(&files.ca)), ..Default::default() });
    if let Ok(d) = EtcdDcs::connect(&no_cert, clock.clone()).await {
        assert!(d.read().await.is_err(), "etcd served a client without a certificate");
    }

    // Half a client identity is a configuration error that says what to fix.
    let mut half = cfg.clone();
    half.tls = Some(EtcdTls { client_key_pem: None, ..cfg.tls.clone().expect("tls") });
    let e = EtcdDcs::connect(&half, clock).await.err().expect("half an identity must be refused");
    assert!(e.to_string().contains("set both or neither"), "{e}");
}
