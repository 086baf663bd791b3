use super::*;

#[test]
fn tls_modes_round_trip_kuma_names() {
    for m in [
        TlsMode::Disable,
        TlsMode::VerifyNone,
        TlsMode::VerifyCa,
        TlsMode::VerifyFull,
    ] {
        assert_eq!(TlsMode::from_name(m.name()), Some(m));
    }
    assert_eq!(TlsMode::from_name("require"), None);
}

#[test]
fn debug_never_shows_the_password() {
    let config = PostgresConfig {
        password: "hunter2".into(),
        ..PostgresConfig::default()
    };
    assert!(!format!("{config:?}").contains("hunter2"));
}

#[test]
fn bad_settings_name_themselves() {
    let bad = |c: PostgresConfig| pg_config(&c).unwrap_err().to_string();
    assert!(
        bad(PostgresConfig {
            host: String::new(),
            ..Default::default()
        })
        .contains("store.postgres.host")
    );
    assert!(
        bad(PostgresConfig {
            connection_timeout: Duration::ZERO,
            ..Default::default()
        })
        .contains("store.postgres.connectionTimeout")
    );
    let tls = MakeRustls::new(&PostgresTls {
        mode: TlsMode::VerifyFull,
        ..Default::default()
    });
    assert!(
        tls.err()
            .expect("verifyFull without a CA")
            .to_string()
            .contains("store.postgres.tls.caPath")
    );
}
