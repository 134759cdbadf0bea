//! TLS to a real PostgreSQL: the test cluster of scripts/pg.sh serves a certificate for the
//! name "localhost" signed by its own CA (`DFSERVE_TEST_PG_TLS_DIR`).

use super::*;

/// The test cluster's TLS directory, when the test scripts started one.
fn tls_dir() -> Option<std::path::PathBuf> {
    match std::env::var_os("DFSERVE_TEST_PG_TLS_DIR") {
        Some(d) => Some(d.into()),
        None if std::env::var("DFSERVE_REQUIRE_POSTGRES").as_deref() == Ok("1") => {
            panic!("DFSERVE_REQUIRE_POSTGRES=1 but DFSERVE_TEST_PG_TLS_DIR is not set")
        }
        None => {
            eprintln!("TLS to PostgreSQL not tested (DFSERVE_TEST_PG_TLS_DIR is not set)");
            None
        }
    }
}

/// Whether the connection `conn` opens is encrypted, or why it could not be opened.
fn encrypted(conn: &str) -> Result<bool, String> {
    let db = Db::connect(conn).map_err(|e| e.to_string())?;
    let mut c = db.client().map_err(|e| e.to_string())?;
    let row =
        c.query_one("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()", &[]).map_err(|e| e.to_string())?;
    Ok(row.get(0))
}

#[test]
fn sslmode_verifies_what_libpq_would_verify() {
    let (Some(tls), Some(url)) = (tls_dir(), test_database("tls")) else { return };
    // The test database's key=value string names host=127.0.0.1; the certificate is for
    // "localhost". hostaddr keeps the address while host gives the name to check.
    assert!(url.contains("host=127.0.0.1 "), "{url}");
    let by_name = url.replace("host=127.0.0.1 ", "host=localhost hostaddr=127.0.0.1 ");
    let (ca, other) = (tls.join("ca.crt"), tls.join("other-ca.crt"));
    let ca = format!("'{}'", ca.display());
    let other = format!("'{}'", other.display());

    assert_eq!(encrypted(&format!("{by_name} sslmode=verify-full sslrootcert={ca}")), Ok(true));
    // Chain to the CA but not the name: verify-full refuses, verify-ca accepts.
    let e = encrypted(&format!("{url} sslmode=verify-full sslrootcert={ca}")).unwrap_err();
    assert!(e.contains("certificate"), "{e}");
    assert_eq!(encrypted(&format!("{url} sslmode=verify-ca sslrootcert={ca}")), Ok(true));
    // A CA that signed nothing of the server's: refused even by require.
    for mode in ["verify-full", "verify-ca", "require"] {
        let e = encrypted(&format!("{by_name} sslmode={mode} sslrootcert={other}")).unwrap_err();
        assert!(e.contains("certificate"), "{mode}: {e}");
    }
    // Without a CA, require and prefer encrypt without checking; disable does not encrypt.
    assert_eq!(encrypted(&format!("{url} sslmode=require")), Ok(true));
    assert_eq!(encrypted(&url), Ok(true));
    assert_eq!(encrypted(&format!("{url} sslmode=disable")), Ok(false));

    // The pool works over a verified connection, with the schema migrated through it.
    let db = Db::connect(&format!("{by_name} sslmode=verify-full sslrootcert={ca}")).unwrap();
    assert_eq!(db.tls_mode(), tls::Mode::VerifyFull);
    let version: i32 =
        db.client().unwrap().query_one("SELECT max(version) FROM dfserve_migrations", &[]).unwrap().get(0);
    assert_eq!(version, SCHEMA_VERSION);
}
