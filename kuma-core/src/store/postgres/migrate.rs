//! The schema and its numbered migrations.

use super::{PostgresConfig, PostgresError, connect_one};

/// Held while migrating, so two `migrate up` at once run one after the
/// other (advisory locks are per database).
const MIGRATION_LOCK: i64 = 0x6b75_6d61_6d69_6772; // "kumamigr"

/// The migrations, in order. Never edit one that was released: add the
/// next number.
const MIGRATIONS: &[(i64, &str, &str)] = &[(
    1,
    "resources",
    r#"
    -- One store-wide counter: every write takes its next value, so a key's
    -- versions rise across delete and re-create, on every replica.
    CREATE SEQUENCE kuma_resource_version AS bigint;
    CREATE TABLE kuma_resources (
        type     text COLLATE "C" NOT NULL,
        -- '' for global types.
        mesh     text COLLATE "C" NOT NULL,
        name     text COLLATE "C" NOT NULL,
        version  bigint NOT NULL,
        -- The universal JSON of the resource (meta and spec, no version).
        resource text NOT NULL,
        PRIMARY KEY (type, mesh, name)
    );
    -- A Mesh's delete removes everything in it.
    CREATE INDEX kuma_resources_mesh ON kuma_resources (mesh);
    "#,
)];

/// The schema version this binary runs on: the number of the last migration.
pub const SCHEMA_VERSION: i64 = MIGRATIONS[MIGRATIONS.len() - 1].0;

/// What [`migrate_up`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrationReport {
    /// The schema version before.
    pub from: i64,
    /// The schema version now ([`SCHEMA_VERSION`]).
    pub to: i64,
    /// The migrations applied now, as (number, name); empty when the schema
    /// was already current.
    pub applied: Vec<(i64, &'static str)>,
}

impl std::fmt::Display for MigrationReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.applied.is_empty() {
            return write!(f, "schema is up to date at version {}", self.to);
        }
        let names: Vec<String> = self
            .applied
            .iter()
            .map(|(n, name)| format!("{n} ({name})"))
            .collect();
        write!(
            f,
            "schema migrated from version {} to {}: applied {}",
            self.from,
            self.to,
            names.join(", ")
        )
    }
}

/// Creates the schema or brings it up to [`SCHEMA_VERSION`], recording each
/// migration in `schema_migrations`. Idempotent: a second run applies
/// nothing. Safe from several processes at once: they take turns on an
/// advisory lock, and each migration runs in a transaction with its record.
pub async fn migrate_up(config: &PostgresConfig) -> Result<MigrationReport, PostgresError> {
    let (mut client, connection) = connect_one(config).await?;
    let db = |e: tokio_postgres::Error| PostgresError::Database(e.to_string());
    client
        .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])
        .await
        .map_err(db)?;
    client
        .batch_execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (
                 version bigint PRIMARY KEY,
                 name text NOT NULL,
                 applied_at timestamptz NOT NULL DEFAULT now()
             )",
        )
        .await
        .map_err(db)?;
    let from: i64 = client
        .query_one(
            "SELECT coalesce(max(version), 0) FROM schema_migrations",
            &[],
        )
        .await
        .map_err(db)?
        .get(0);
    if from > SCHEMA_VERSION {
        return Err(PostgresError::SchemaTooNew {
            found: from,
            supported: SCHEMA_VERSION,
        });
    }
    let mut applied = Vec::new();
    for &(number, name, sql) in MIGRATIONS.iter().filter(|(n, _, _)| *n > from) {
        let tx = client.transaction().await.map_err(db)?;
        tx.batch_execute(sql).await.map_err(|e| {
            PostgresError::Database(format!("migration {number} ({name}) failed: {e}"))
        })?;
        tx.execute(
            "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
            &[&number, &name],
        )
        .await
        .map_err(db)?;
        tx.commit().await.map_err(db)?;
        applied.push((number, name));
    }
    // Closing the session releases the lock.
    drop(client);
    let _ = connection.await;
    Ok(MigrationReport {
        from,
        to: SCHEMA_VERSION,
        applied,
    })
}

/// Fails with [`PostgresError::NotMigrated`] (or `SchemaTooNew`) unless the
/// database is at [`SCHEMA_VERSION`].
pub(super) async fn check_schema(
    client: &tokio_postgres::Client,
    config: &PostgresConfig,
) -> Result<(), PostgresError> {
    let found: i64 = match client
        .query_one(
            "SELECT coalesce(max(version), 0) FROM schema_migrations",
            &[],
        )
        .await
    {
        Ok(row) => row.get(0),
        Err(e)
            if e.as_db_error().map(|d| d.code())
                == Some(&tokio_postgres::error::SqlState::UNDEFINED_TABLE) =>
        {
            0
        }
        Err(e) => return Err(PostgresError::Database(e.to_string())),
    };
    if found > SCHEMA_VERSION {
        return Err(PostgresError::SchemaTooNew {
            found,
            supported: SCHEMA_VERSION,
        });
    }
    if found < SCHEMA_VERSION {
        return Err(PostgresError::NotMigrated {
            db_name: config.db_name.clone(),
            found,
            expected: SCHEMA_VERSION,
        });
    }
    Ok(())
}
