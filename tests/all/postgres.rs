//! The private Postgres cluster the scale-out tests run on: started by the
//! tests themselves (as a non-root user when they run as root), answering on
//! its own port, gone when dropped.

use warden_tests::postgres::PgCluster;

#[test]
fn a_private_postgres_cluster_starts_answers_and_stops() {
    let cluster = PgCluster::start();
    assert_eq!(cluster.psql("select 1 + 1").unwrap(), "2");
    assert_eq!(cluster.psql("show fsync").unwrap(), "off");
    assert_eq!(cluster.psql("select current_user").unwrap(), "warden");
    cluster.psql("create database warden_a").unwrap();
    assert!(
        cluster
            .psql("select datname from pg_database")
            .unwrap()
            .contains("warden_a")
    );
    let port = cluster.port;
    drop(cluster);
    let refused = std::net::TcpStream::connect(("127.0.0.1", port));
    assert!(refused.is_err(), "the cluster still listens on {port}");
}
