//! A PostgreSQL table as a [`Destination`]: each batch is one transaction, a binary `COPY` of
//! its records followed by an upsert of the sink's row in the offsets table.
//!
//! Two tables (created when absent, checked when present):
//!
//! ```sql
//! CREATE TABLE <table> (
//!     position     BIGINT PRIMARY KEY, -- stream position at the end of the message
//!     recording_id BIGINT NOT NULL,    -- the recording it comes from
//!     timestamp_ns BIGINT NOT NULL,    -- the message's time, ns since the epoch
//!     key          BIGINT,             -- the message's key, NULL without one
//!     payload      BYTEA NOT NULL      -- the whole message
//! );
//! CREATE TABLE tern_sink_offsets (     -- in the data table's schema
//!     sink         TEXT PRIMARY KEY,   -- the sink's name (default: the table name)
//!     recording_id BIGINT NOT NULL,    -- the recording the sink copies
//!     position     BIGINT NOT NULL,    -- everything up to here is stored
//!     updated_at   TIMESTAMPTZ         -- time of the last write
//! );
//! ```
//!
//! The time is stored as nanoseconds (`BIGINT`) rather than `TIMESTAMPTZ`, which holds
//! microseconds only; `to_timestamp(timestamp_ns / 1e9)` gives a `TIMESTAMPTZ` in a query.
//!
//! Since the records and the offsets row are written in one transaction, the stored position
//! always says exactly what the table holds; [`Destination::open`] reads it back, so a write
//! that failed at any point (even in `COMMIT`, with the outcome unknown to the sink) is
//! neither lost nor duplicated. A table holds one sink's records.
//!
//! The connection does not use TLS (`sslmode=require` fails); durability is the server's
//! (`synchronous_commit` on, its default, makes a committed batch survive a server crash).

use crate::destination::{Destination, Resume, SinkError};
use crate::record::Batch;
use postgres::binary_copy::BinaryCopyInWriter;
use postgres::error::SqlState;
use postgres::types::{ToSql, Type};
use postgres::{Client, NoTls, Statement};
use std::fmt;
use std::time::Duration;
use tern_store::RecordingId;

/// The offsets table's name (in the data table's schema, or unqualified like the data table).
pub const OFFSETS_TABLE: &str = "tern_sink_offsets";

/// Key of the transaction-level advisory lock taken while creating the tables, so that sinks
/// opening at the same moment do not race in `CREATE TABLE IF NOT EXISTS`.
const DDL_LOCK_KEY: i64 = 0x7465_726e_5f73_696e; // "tern_sin"

/// How long connecting may take when the connection string sets no `connect_timeout`.
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The data table's columns: name, type as `format_type` spells it, `NOT NULL`.
const DATA_COLUMNS: [(&str, &str, bool); 5] = [
    ("position", "bigint", true),
    ("recording_id", "bigint", true),
    ("timestamp_ns", "bigint", true),
    ("key", "bigint", false),
    ("payload", "bytea", true),
];

/// The offsets table's columns.
const OFFSETS_COLUMNS: [(&str, &str, bool); 4] = [
    ("sink", "text", true),
    ("recording_id", "bigint", true),
    ("position", "bigint", true),
    ("updated_at", "timestamp with time zone", false),
];

/// The types of the copied columns, in [`DATA_COLUMNS`] order.
const COPY_TYPES: [Type; 5] = [Type::INT8, Type::INT8, Type::INT8, Type::INT8, Type::BYTEA];

/// Where and under which name a [`PostgresDestination`] stores records.
#[derive(Clone, PartialEq, Eq)]
pub struct PostgresConfig {
    /// libpq-style connection string (`host=127.0.0.1 port=5432 user=postgres dbname=tern`)
    /// or URL (`postgresql://user@host:5432/db`).
    pub connection: String,
    /// The data table: `name` or `schema.name`, each part an unquoted SQL identifier (ASCII
    /// letters, digits, `_`, `$`; not starting with a digit; at most 63 bytes). Like PostgreSQL
    /// does with unquoted names, letters are folded to lower case.
    pub table: String,
    /// The sink's row in the offsets table; `None`: the table name (lower case, as given with
    /// or without schema).
    pub sink_name: Option<String>,
}

impl PostgresConfig {
    /// A configuration for `table` on the server `connection` names, sink name = table name.
    pub fn new(connection: impl Into<String>, table: impl Into<String>) -> Self {
        Self {
            connection: connection.into(),
            table: table.into(),
            sink_name: None,
        }
    }

    /// The same with the sink's row in the offsets table named `sink_name`.
    pub fn with_sink_name(mut self, sink_name: impl Into<String>) -> Self {
        self.sink_name = Some(sink_name.into());
        self
    }
}

impl fmt::Debug for PostgresConfig {
    /// Leaves the connection string out: it may hold a password.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresConfig")
            .field("connection", &"<hidden>")
            .field("table", &self.table)
            .field("sink_name", &self.sink_name)
            .finish()
    }
}

/// A table name, validated and folded to lower case.
#[derive(Debug, Clone, PartialEq, Eq)]
struct TableName {
    schema: Option<String>,
    name: String,
}

impl TableName {
    fn parse(text: &str) -> Result<Self, String> {
        let parts: Vec<&str> = text.split('.').collect();
        let (schema, name) = match parts.as_slice() {
            [name] => (None, *name),
            [schema, name] => (Some(*schema), *name),
            _ => {
                return Err(format!(
                    "table name {text:?}: expected `name` or `schema.name`"
                ))
            }
        };
        let check = |part: &str| -> Result<String, String> {
            let mut chars = part.chars();
            let first_ok = chars
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
            let rest_ok = chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$');
            if !first_ok || !rest_ok {
                return Err(format!(
                    "table name {text:?}: {part:?} is not a plain SQL identifier (ASCII letters, \
                     digits, `_`, `$`, not starting with a digit)"
                ));
            }
            if part.len() > 63 {
                return Err(format!(
                    "table name {text:?}: {part:?} is longer than 63 bytes"
                ));
            }
            Ok(part.to_ascii_lowercase())
        };
        Ok(Self {
            schema: schema.map(check).transpose()?,
            name: check(name)?,
        })
    }

    /// `schema.name` or `name`, unquoted (lower case).
    fn plain(&self) -> String {
        match &self.schema {
            Some(schema) => format!("{schema}.{}", self.name),
            None => self.name.clone(),
        }
    }

    /// The name quoted for SQL (`"schema"."name"`); the parts hold no `"`.
    fn quoted(&self) -> String {
        match &self.schema {
            Some(schema) => format!("\"{schema}\".\"{}\"", self.name),
            None => format!("\"{}\"", self.name),
        }
    }

    /// The offsets table next to this one.
    fn offsets(&self) -> TableName {
        TableName {
            schema: self.schema.clone(),
            name: OFFSETS_TABLE.to_string(),
        }
    }
}

/// A connection and what was prepared on it.
struct Session {
    client: Client,
    backend_pid: i32,
    lock_offsets: Statement,
    copy: Statement,
    upsert_offsets: Statement,
}

/// A hook called in [`Destination::write`] just before `COMMIT`.
type BeforeCommit = Box<dyn FnMut() + Send>;

/// A PostgreSQL table a sink copies records into (see the [module docs](self) for the tables
/// and the transaction).
pub struct PostgresDestination {
    connect: postgres::Config,
    location: String,
    table: TableName,
    offsets: TableName,
    sink_name: String,
    session: Option<Session>,
    before_commit: Option<BeforeCommit>,
}

impl fmt::Debug for PostgresDestination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresDestination")
            .field("table", &self.table.plain())
            .field("sink_name", &self.sink_name)
            .field("location", &self.location)
            .field("connected", &self.session.is_some())
            .finish()
    }
}

impl PostgresDestination {
    /// A destination for `config`; it connects in [`Destination::open`].
    ///
    /// # Errors
    /// [`SinkError::Fatal`] for a connection string that does not parse or a table name that
    /// is not a plain or schema-qualified identifier.
    pub fn new(config: PostgresConfig) -> Result<Self, SinkError> {
        let table = TableName::parse(&config.table)
            .map_err(|message| SinkError::Fatal(format!("postgres destination: {message}")))?;
        let mut connect: postgres::Config = config.connection.parse().map_err(|error| {
            SinkError::Fatal(format!(
                "postgres table {}: connection string: {error}",
                table.plain()
            ))
        })?;
        if connect.get_connect_timeout().is_none() {
            connect.connect_timeout(DEFAULT_CONNECT_TIMEOUT);
        }
        if connect.get_application_name().is_none() {
            connect.application_name("tern-sink");
        }
        let location = location(&connect);
        let sink_name = config.sink_name.unwrap_or_else(|| table.plain());
        if sink_name.is_empty() {
            return Err(SinkError::Fatal(format!(
                "postgres table {}: the sink name is empty",
                table.plain()
            )));
        }
        Ok(Self {
            connect,
            location,
            offsets: table.offsets(),
            table,
            sink_name,
            session: None,
            before_commit: None,
        })
    }

    /// The data table, `schema.name` or `name` (lower case).
    pub fn table(&self) -> String {
        self.table.plain()
    }

    /// The sink's name: its row in the offsets table.
    pub fn sink_name(&self) -> &str {
        &self.sink_name
    }

    /// The process id of the server backend serving the connection (`pg_backend_pid()`), while
    /// connected: to find it in `pg_stat_activity`.
    pub fn backend_pid(&self) -> Option<i32> {
        self.session.as_ref().map(|session| session.backend_pid)
    }

    /// Calls `hook` in every [`Destination::write`] after the records and the position are
    /// sent, just before `COMMIT`: for fault-injection tests (kill the connection, or the
    /// process, with the transaction open).
    pub fn set_before_commit(&mut self, hook: impl FnMut() + Send + 'static) {
        self.before_commit = Some(Box::new(hook));
    }

    /// Where the stored data ends, read only (for `tern sink status`): no table is created,
    /// no row locked, a running sink is not disturbed. `None`: no offsets table or no row for
    /// this sink.
    ///
    /// # Errors
    /// As [`Destination::open`]'s connection errors.
    pub fn peek(&self) -> Result<Option<Resume>, SinkError> {
        let mut client = self
            .connect
            .connect(NoTls)
            .map_err(|error| self.error("connecting", error))?;
        let offsets: Option<String> = client
            .query_one("SELECT to_regclass($1)::text", &[&self.offsets.quoted()])
            .map_err(|error| self.error("looking up the offsets table", error))?
            .get(0);
        if offsets.is_none() {
            return Ok(None);
        }
        let row = client
            .query_opt(
                &format!(
                    "SELECT recording_id, position FROM {} WHERE sink = $1",
                    self.offsets.quoted()
                ),
                &[&self.sink_name],
            )
            .map_err(|error| self.error("reading the offsets row", error))?;
        Ok(row.map(|row| Resume {
            recording_id: RecordingId::new(row.get(0)),
            position: row.get(1),
        }))
    }

    fn error(&self, what: &str, error: postgres::Error) -> SinkError {
        classify(&format!("{}: {what}", self.describe()), &error)
    }

    fn connect(&self) -> Result<Session, SinkError> {
        let mut client = self
            .connect
            .connect(NoTls)
            .map_err(|error| self.error("connecting", error))?;
        self.create_tables(&mut client)?;
        self.check_table(&mut client, &self.table, &DATA_COLUMNS, "position")?;
        self.check_table(&mut client, &self.offsets, &OFFSETS_COLUMNS, "sink")?;
        let backend_pid: i32 = client
            .query_one("SELECT pg_backend_pid()", &[])
            .map_err(|error| self.error("reading the backend pid", error))?
            .get(0);
        let offsets = self.offsets.quoted();
        let lock_offsets = client
            .prepare(&format!(
                "SELECT recording_id, position FROM {offsets} WHERE sink = $1 FOR UPDATE"
            ))
            .map_err(|error| self.error("preparing", error))?;
        let columns: Vec<&str> = DATA_COLUMNS.iter().map(|column| column.0).collect();
        let copy = client
            .prepare(&format!(
                "COPY {} ({}) FROM STDIN BINARY",
                self.table.quoted(),
                columns.join(", ")
            ))
            .map_err(|error| self.error("preparing", error))?;
        let upsert_offsets = client
            .prepare_typed(
                &format!(
                    "INSERT INTO {offsets} (sink, recording_id, position, updated_at) \
                     VALUES ($1, $2, $3, now()) ON CONFLICT (sink) DO UPDATE SET \
                     recording_id = EXCLUDED.recording_id, position = EXCLUDED.position, \
                     updated_at = EXCLUDED.updated_at"
                ),
                &[Type::TEXT, Type::INT8, Type::INT8],
            )
            .map_err(|error| self.error("preparing", error))?;
        Ok(Session {
            client,
            backend_pid,
            lock_offsets,
            copy,
            upsert_offsets,
        })
    }

    /// Creates both tables when absent, under an advisory lock (concurrent `CREATE TABLE IF NOT
    /// EXISTS` of one name may fail).
    fn create_tables(&self, client: &mut Client) -> Result<(), SinkError> {
        let sql = format!(
            "SET client_min_messages TO warning; \
             BEGIN; \
             SELECT pg_advisory_xact_lock({DDL_LOCK_KEY}); \
             CREATE TABLE IF NOT EXISTS {} (\
                 position BIGINT PRIMARY KEY, \
                 recording_id BIGINT NOT NULL, \
                 timestamp_ns BIGINT NOT NULL, \
                 key BIGINT, \
                 payload BYTEA NOT NULL); \
             CREATE TABLE IF NOT EXISTS {} (\
                 sink TEXT PRIMARY KEY, \
                 recording_id BIGINT NOT NULL, \
                 position BIGINT NOT NULL, \
                 updated_at TIMESTAMPTZ); \
             COMMIT;",
            self.table.quoted(),
            self.offsets.quoted()
        );
        client
            .batch_execute(&sql)
            .map_err(|error| self.error("creating the tables", error))
    }

    /// Checks that `table` has exactly `expected` columns and its primary key is `key`.
    fn check_table(
        &self,
        client: &mut Client,
        table: &TableName,
        expected: &[(&str, &str, bool)],
        key: &str,
    ) -> Result<(), SinkError> {
        let plain = table.plain();
        let describe = self.describe();
        let fatal = |what: String| {
            SinkError::Fatal(format!(
                "{describe}: table {plain} is not of a tern sink's shape: {what}"
            ))
        };
        let relation = client
            .query_opt(
                "SELECT c.oid, c.relkind::text FROM pg_class c WHERE c.oid = to_regclass($1)",
                &[&table.quoted()],
            )
            .map_err(|error| self.error("reading the table's definition", error))?
            .ok_or_else(|| fatal("it does not exist after CREATE TABLE IF NOT EXISTS".into()))?;
        let oid: u32 = relation.get(0);
        let kind: String = relation.get(1);
        if kind != "r" && kind != "p" {
            return Err(fatal(format!(
                "it is not a table (pg_class.relkind {kind:?})"
            )));
        }
        let rows = client
            .query(
                "SELECT a.attname::text, format_type(a.atttypid, a.atttypmod), a.attnotnull \
                 FROM pg_attribute a \
                 WHERE a.attrelid = $1 AND a.attnum > 0 AND NOT a.attisdropped \
                 ORDER BY a.attnum",
                &[&oid],
            )
            .map_err(|error| self.error("reading the table's columns", error))?;
        let found: Vec<(String, String, bool)> = rows
            .iter()
            .map(|row| (row.get(0), row.get(1), row.get(2)))
            .collect();
        let mut differences = Vec::new();
        for (name, kind, not_null) in expected {
            match found.iter().find(|column| column.0 == *name) {
                None => differences.push(format!("no column {name} ({kind})")),
                Some((_, found_kind, found_not_null)) => {
                    if found_kind != kind {
                        differences.push(format!("column {name} is {found_kind}, expected {kind}"));
                    } else if *not_null && !found_not_null {
                        differences.push(format!("column {name} is nullable, expected NOT NULL"));
                    }
                }
            }
        }
        for (name, kind, _) in &found {
            if !expected.iter().any(|column| column.0 == name) {
                differences.push(format!("unexpected column {name} ({kind})"));
            }
        }
        let primary_key: Option<Vec<String>> = client
            .query_one(
                "SELECT array_agg(a.attname::text ORDER BY a.attnum) FROM pg_index i \
                 JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey) \
                 WHERE i.indrelid = $1 AND i.indisprimary",
                &[&oid],
            )
            .map_err(|error| self.error("reading the table's primary key", error))?
            .get(0);
        match primary_key.as_deref() {
            Some([column]) if column == key => {}
            Some(columns) => differences.push(format!(
                "primary key ({}), expected ({key})",
                columns.join(", ")
            )),
            None => differences.push(format!("no primary key, expected ({key})")),
        }
        if differences.is_empty() {
            Ok(())
        } else {
            Err(fatal(differences.join("; ")))
        }
    }

    /// Reads the sink's offsets row and checks it against the data table.
    fn read_resume(&self, session: &mut Session) -> Result<Option<Resume>, SinkError> {
        let stored = session
            .client
            .query_opt(
                &format!(
                    "SELECT recording_id, position FROM {} WHERE sink = $1",
                    self.offsets.quoted()
                ),
                &[&self.sink_name],
            )
            .map_err(|error| self.error("reading the offsets row", error))?
            .map(|row| Resume {
                recording_id: RecordingId::new(row.get(0)),
                position: row.get(1),
            });
        let last: Option<i64> = session
            .client
            .query_one(
                &format!("SELECT max(position) FROM {}", self.table.quoted()),
                &[],
            )
            .map_err(|error| self.error("reading the last position", error))?
            .get(0);
        match (stored, last) {
            (None, Some(last)) => Err(SinkError::Fatal(format!(
                "{}: the table holds records (up to position {last}) but {} has no row for \
                 sink {:?}: another sink's table, or its offsets row was deleted",
                self.describe(),
                self.offsets.plain(),
                self.sink_name
            ))),
            (Some(resume), None) => Err(SinkError::Fatal(format!(
                "{}: the table is empty but {} says sink {:?} holds recording {} up to \
                 position {}: its rows were deleted or the table made again; to copy from the \
                 start, delete that row (DELETE FROM {} WHERE sink = '{}')",
                self.describe(),
                self.offsets.plain(),
                self.sink_name,
                resume.recording_id,
                resume.position,
                self.offsets.plain(),
                self.sink_name
            ))),
            (Some(resume), Some(last)) if last > resume.position => Err(SinkError::Fatal(format!(
                "{}: the table holds records up to position {last}, after the position \
                     {} stored for sink {:?} in {}: rows were written by something else",
                self.describe(),
                resume.position,
                self.sink_name,
                self.offsets.plain()
            ))),
            _ => Ok(stored),
        }
    }

    fn write_in(&mut self, batch: &Batch) -> Result<(), SinkError> {
        let describe = self.describe();
        let Some(session) = self.session.as_mut() else {
            return Err(SinkError::Unavailable(format!(
                "{describe}: not connected (open it first)"
            )));
        };
        let at = |what: &str| {
            let context = format!("{describe}: {what}");
            move |error: postgres::Error| classify(&context, &error)
        };
        let recording_id = batch.recording_id.get();
        let mut transaction = session.client.transaction().map_err(at("BEGIN"))?;
        let stored = transaction
            .query_opt(&session.lock_offsets, &[&self.sink_name])
            .map_err(at("reading the offsets row"))?;
        if let Some(row) = stored {
            let (stored_recording, stored_position): (i64, i64) = (row.get(0), row.get(1));
            if stored_recording != recording_id {
                return Err(SinkError::Fatal(format!(
                    "{describe}: holds recording {stored_recording} (up to position \
                     {stored_position}), not recording {recording_id}: use another table or \
                     sink name"
                )));
            }
            if let Some(first) = batch.first_position() {
                if first <= stored_position {
                    return Err(SinkError::Fatal(format!(
                        "{describe}: batch starts at position {first}, but the table already \
                         holds recording {recording_id} up to position {stored_position}"
                    )));
                }
            }
        }
        if !batch.records.is_empty() {
            let copy = transaction
                .copy_in(&session.copy)
                .map_err(at("starting COPY"))?;
            let mut writer = BinaryCopyInWriter::new(copy, &COPY_TYPES);
            // Made once: an error's context is not formatted for every row.
            let on_copy = at("COPY");
            for record in &batch.records {
                let row: [&(dyn ToSql + Sync); 5] = [
                    &record.position,
                    &recording_id,
                    &record.timestamp_ns,
                    &record.key,
                    &record.payload,
                ];
                writer.write(&row).map_err(&on_copy)?;
            }
            let copied = writer.finish().map_err(at("finishing COPY"))?;
            if copied != batch.records.len() as u64 {
                return Err(SinkError::Fatal(format!(
                    "{describe}: COPY stored {copied} rows of {}",
                    batch.records.len()
                )));
            }
        }
        transaction
            .execute(
                &session.upsert_offsets,
                &[&self.sink_name, &recording_id, &batch.end_position],
            )
            .map_err(at("storing the position"))?;
        if let Some(hook) = self.before_commit.as_mut() {
            hook();
        }
        transaction.commit().map_err(at("COMMIT"))
    }
}

impl Destination for PostgresDestination {
    fn describe(&self) -> String {
        format!(
            "postgres table {} on {} (sink {})",
            self.table.plain(),
            self.location,
            self.sink_name
        )
    }

    fn open(&mut self) -> Result<Option<Resume>, SinkError> {
        let reuse = self
            .session
            .as_ref()
            .is_some_and(|session| !session.client.is_closed());
        if !reuse {
            self.session = None;
            self.session = Some(self.connect()?);
        }
        let mut session = self
            .session
            .take()
            .ok_or_else(|| SinkError::Unavailable(format!("{}: not connected", self.describe())))?;
        let resume = self.read_resume(&mut session);
        if resume.is_ok() {
            self.session = Some(session);
        }
        resume
    }

    fn write(&mut self, batch: &Batch) -> Result<(), SinkError> {
        let result = self.write_in(batch);
        if result.is_err() {
            // The engine reopens before it writes again; a fresh connection leaves no doubt
            // about the state of this one (an open transaction, a half-sent COPY).
            self.session = None;
        }
        result
    }
}

/// `host:port/dbname` for messages (never the password).
fn location(config: &postgres::Config) -> String {
    let host = match config.get_hosts().first() {
        Some(postgres::config::Host::Tcp(host)) => host.clone(),
        #[cfg(unix)]
        Some(postgres::config::Host::Unix(path)) => path.display().to_string(),
        None => "localhost".to_string(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let dbname = config
        .get_dbname()
        .or(config.get_user())
        .unwrap_or("postgres");
    format!("{host}:{port}/{dbname}")
}

/// Whether an error of the server or the connection is worth retrying.
fn classify(context: &str, error: &postgres::Error) -> SinkError {
    let message = format!("{context}: {}", describe_error(error));
    if error.is_closed() {
        return SinkError::Unavailable(message);
    }
    let Some(code) = error.code() else {
        // No SQLSTATE: the connection failed (refused, reset, timed out) or broke.
        return SinkError::Unavailable(message);
    };
    let class = &code.code()[..2];
    let retryable = matches!(
        class,
        "08" // connection exception
        | "53" // insufficient resources (disk full, out of memory, too many connections)
        | "57" // operator intervention (terminated, canceled, shutdown, cannot connect now)
        | "58" // system error (I/O error)
        | "40" // transaction rollback (serialization failure, deadlock)
    ) || *code == SqlState::LOCK_NOT_AVAILABLE;
    if retryable {
        SinkError::Unavailable(message)
    } else {
        SinkError::Fatal(message)
    }
}

/// The error with its server detail (`db error: ERROR: ...` alone says little).
fn describe_error(error: &postgres::Error) -> String {
    match error.as_db_error() {
        Some(db) => {
            let mut text = format!("{} {}: {}", db.severity(), db.code().code(), db.message());
            if let Some(detail) = db.detail() {
                text.push_str(&format!(" ({detail})"));
            }
            text
        }
        None => error.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_names_are_validated_folded_and_quoted() {
        let plain = TableName::parse("Egress").unwrap();
        assert_eq!(plain.plain(), "egress");
        assert_eq!(plain.quoted(), "\"egress\"");
        assert_eq!(plain.offsets().quoted(), "\"tern_sink_offsets\"");
        let qualified = TableName::parse("sink_data.egress_2$").unwrap();
        assert_eq!(qualified.quoted(), "\"sink_data\".\"egress_2$\"");
        assert_eq!(
            qualified.offsets().quoted(),
            "\"sink_data\".\"tern_sink_offsets\""
        );
        for bad in [
            "",
            "a.b.c",
            ".x",
            "x.",
            "1abc",
            "a b",
            "a\"b",
            "a;drop table x",
            "é",
        ] {
            assert!(TableName::parse(bad).is_err(), "{bad:?} accepted");
        }
        assert!(TableName::parse(&"x".repeat(64)).is_err());
        assert!(TableName::parse(&"x".repeat(63)).is_ok());
    }

    #[test]
    fn config_errors_are_fatal_and_hide_the_password() {
        let error =
            PostgresDestination::new(PostgresConfig::new("host=x", "bad name")).unwrap_err();
        assert!(
            matches!(error, SinkError::Fatal(ref m) if m.contains("bad name")),
            "{error:?}"
        );
        let error =
            PostgresDestination::new(PostgresConfig::new("host=x port=notaport", "t")).unwrap_err();
        assert!(matches!(error, SinkError::Fatal(_)), "{error:?}");
        let destination = PostgresDestination::new(PostgresConfig::new(
            "host=db.example port=6543 user=u password=secret dbname=d",
            "T",
        ))
        .unwrap();
        assert_eq!(
            destination.describe(),
            "postgres table t on db.example:6543/d (sink t)"
        );
        assert!(!format!("{destination:?}").contains("secret"));
        let config = PostgresConfig::new("password=secret", "t").with_sink_name("s");
        assert!(!format!("{config:?}").contains("secret"));
        assert_eq!(PostgresDestination::new(config).unwrap().sink_name(), "s");
    }
}
