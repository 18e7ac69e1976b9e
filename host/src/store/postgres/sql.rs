//! The Postgres backend's two ways to SQL: [`Tx`], a transaction of the writer
//! thread, and [`Reader`], a pooled async connection for reads (its statements
//! cached by the pool). Rows are `tokio_postgres` rows either way.
//!
//! The writer's statements are pipelined: [`Tx::execute`] encodes its
//! parameters and keeps the statement; all kept statements are sent at once,
//! in order, when a query needs an answer or the transaction commits, so a
//! batch of writes costs a few round trips, not one per statement. (The
//! writer thread drives its connection on a runtime of its own.)
//!
//! Conventions of this folder: every integer column is `BIGINT` and every
//! integer parameter an `i64`; flags are `BOOLEAN`; JSON is `TEXT`; every
//! text column is `TEXT COLLATE "C"`, so keys and ids order bytewise as
//! they do in SQLite.

use std::collections::HashMap;

use bytes::{Bytes, BytesMut};
use tokio_postgres::types::{IsNull, Type, to_sql_checked};
use tokio_postgres::{Client, Statement};
use tokio_postgres_rustls::MakeRustlsConnect;

pub use tokio_postgres::Row;
pub use tokio_postgres::types::ToSql;

/// Parameters of a statement.
pub type Params<'a> = &'a [&'a (dyn ToSql + Sync)];

/// The writer thread's connection, on a runtime of its own.
pub struct Session {
    runtime: tokio::runtime::Runtime,
    client: Client,
    /// Statements prepared on this connection, by their SQL.
    statements: HashMap<String, Statement>,
}

impl Session {
    /// Connects (on the calling thread, which must not be a runtime's).
    pub fn connect(config: &tokio_postgres::Config, tls: &MakeRustlsConnect) -> anyhow::Result<Self> {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        let (client, connection) = runtime.block_on(config.connect(tls.clone()))?;
        runtime.spawn(async move {
            if let Err(e) = connection.await {
                tracing::warn!(error = %e, "the store's writer connection ended");
            }
        });
        Ok(Self {
            runtime,
            client,
            statements: HashMap::new(),
        })
    }

    pub fn is_closed(&self) -> bool {
        self.client.is_closed()
    }

    /// Runs statements without parameters, at once (schema changes).
    pub fn batch(&mut self, sql: &str) -> anyhow::Result<()> {
        Ok(self.runtime.block_on(self.client.batch_execute(sql))?)
    }

    fn statement(&mut self, sql: &str) -> anyhow::Result<Statement> {
        if let Some(statement) = self.statements.get(sql) {
            return Ok(statement.clone());
        }
        let statement = self.runtime.block_on(self.client.prepare(sql))?;
        self.statements.insert(sql.to_owned(), statement.clone());
        Ok(statement)
    }
}

/// A parameter already encoded (binary), so that its statement can wait to be
/// sent.
#[derive(Debug)]
struct Encoded(Option<Bytes>);

impl ToSql for Encoded {
    fn to_sql(&self, _: &Type, out: &mut BytesMut) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        match &self.0 {
            Some(bytes) => {
                out.extend_from_slice(bytes);
                Ok(IsNull::No)
            }
            None => Ok(IsNull::Yes),
        }
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    to_sql_checked!();
}

/// One transaction of the writer thread. Dropped without [`Tx::commit`], it
/// is rolled back.
pub struct Tx<'a> {
    session: &'a mut Session,
    /// Statements kept to be sent, in order.
    pending: Vec<(Statement, Vec<Encoded>)>,
    open: bool,
}

impl<'a> Tx<'a> {
    pub fn begin(session: &'a mut Session) -> anyhow::Result<Self> {
        let mut tx = Self {
            session,
            pending: Vec::new(),
            open: true,
        };
        tx.execute("BEGIN", &[])?;
        Ok(tx)
    }

    /// Keeps a statement to be sent with the others (its parameters checked
    /// and encoded now).
    pub fn execute(&mut self, sql: &str, params: Params<'_>) -> anyhow::Result<()> {
        let statement = self.session.statement(sql)?;
        anyhow::ensure!(
            statement.params().len() == params.len(),
            "{} parameters for a statement of {}",
            params.len(),
            statement.params().len()
        );
        let mut encoded = Vec::with_capacity(params.len());
        for (param, ty) in params.iter().zip(statement.params()) {
            let mut buf = BytesMut::new();
            let value = match param.to_sql_checked(ty, &mut buf).map_err(|e| anyhow::anyhow!(e))? {
                IsNull::Yes => None,
                IsNull::No => Some(buf.freeze()),
            };
            encoded.push(Encoded(value));
        }
        self.pending.push((statement, encoded));
        Ok(())
    }

    /// Sends what is kept, in order, and waits for every answer: the first
    /// failure, if any.
    fn flush(&mut self) -> anyhow::Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let pending = std::mem::take(&mut self.pending);
        let client = &self.session.client;
        let answers = self.session.runtime.block_on(futures_util::future::join_all(
            pending
                .iter()
                .map(|(statement, params)| client.execute_raw(statement, params.iter())),
        ));
        for answer in answers {
            answer?;
        }
        Ok(())
    }

    pub fn query(&mut self, sql: &str, params: Params<'_>) -> anyhow::Result<Vec<Row>> {
        self.flush()?;
        let statement = self.session.statement(sql)?;
        let client = &self.session.client;
        Ok(self.session.runtime.block_on(client.query(&statement, params))?)
    }

    pub fn query_opt(&mut self, sql: &str, params: Params<'_>) -> anyhow::Result<Option<Row>> {
        self.flush()?;
        let statement = self.session.statement(sql)?;
        let client = &self.session.client;
        Ok(self.session.runtime.block_on(client.query_opt(&statement, params))?)
    }

    /// Runs statements without parameters, after what is kept (schema
    /// changes).
    pub fn batch(&mut self, sql: &str) -> anyhow::Result<()> {
        self.flush()?;
        self.session.batch(sql)
    }

    pub fn commit(mut self) -> anyhow::Result<()> {
        self.execute("COMMIT", &[])?;
        self.flush()?;
        self.open = false;
        Ok(())
    }
}

impl Drop for Tx<'_> {
    fn drop(&mut self) {
        if self.open {
            self.pending.clear();
            let client = &self.session.client;
            if let Err(e) = self.session.runtime.block_on(client.batch_execute("ROLLBACK")) {
                tracing::debug!(error = %e, "rolling back the writer's transaction");
            }
        }
    }
}

/// A pooled connection for reads.
pub struct Reader(pub(super) deadpool_postgres::Object);

impl Reader {
    pub async fn query(&self, sql: &str, params: Params<'_>) -> anyhow::Result<Vec<Row>> {
        let statement = self.0.prepare_cached(sql).await?;
        Ok(self.0.query(&statement, params).await?)
    }

    pub async fn query_opt(&self, sql: &str, params: Params<'_>) -> anyhow::Result<Option<Row>> {
        let statement = self.0.prepare_cached(sql).await?;
        Ok(self.0.query_opt(&statement, params).await?)
    }

    pub async fn query_one(&self, sql: &str, params: Params<'_>) -> anyhow::Result<Row> {
        let statement = self.0.prepare_cached(sql).await?;
        Ok(self.0.query_one(&statement, params).await?)
    }
}

/// An integer column as `u32` (0 when negative or too large: never stored so).
pub fn u32_at(row: &Row, idx: usize) -> anyhow::Result<u32> {
    Ok(u32::try_from(row.try_get::<_, i64>(idx)?).unwrap_or_default())
}

/// An integer column as `u64` (0 when negative: never stored so).
pub fn u64_at(row: &Row, idx: usize) -> anyhow::Result<u64> {
    Ok(u64::try_from(row.try_get::<_, i64>(idx)?).unwrap_or_default())
}

/// A nullable integer column as `u64`.
pub fn opt_u64_at(row: &Row, idx: usize) -> anyhow::Result<Option<u64>> {
    Ok(row
        .try_get::<_, Option<i64>>(idx)?
        .map(|v| u64::try_from(v).unwrap_or_default()))
}

/// A `u64` as the `BIGINT` it is stored as (saturating: counts never get there).
pub fn int(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}
