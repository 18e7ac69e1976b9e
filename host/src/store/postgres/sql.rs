//! The Postgres backend's two ways to SQL: [`Tx`], a transaction of the writer
//! thread (the blocking `postgres` client; each statement prepared once per
//! connection), and [`Reader`], a pooled async connection for reads (its
//! statements cached by the pool). Rows are `tokio_postgres` rows either way.
//!
//! Conventions of this folder: every integer column is `BIGINT` and every
//! integer parameter an `i64`; flags are `BOOLEAN`; JSON is `TEXT`; every
//! text column is `TEXT COLLATE "C"`, so keys and ids order bytewise as
//! they do in SQLite.

use std::collections::HashMap;

pub use tokio_postgres::Row;
pub use tokio_postgres::types::ToSql;

/// Parameters of a statement.
pub type Params<'a> = &'a [&'a (dyn ToSql + Sync)];

/// Statements the writer's connection has prepared, by their SQL.
#[derive(Default)]
pub struct Statements(HashMap<String, postgres::Statement>);

/// One transaction of the writer thread.
pub struct Tx<'a> {
    tx: postgres::Transaction<'a>,
    statements: &'a mut Statements,
}

impl<'a> Tx<'a> {
    pub fn begin(client: &'a mut postgres::Client, statements: &'a mut Statements) -> anyhow::Result<Self> {
        Ok(Self {
            tx: client.transaction()?,
            statements,
        })
    }

    fn statement(&mut self, sql: &str) -> anyhow::Result<postgres::Statement> {
        if let Some(statement) = self.statements.0.get(sql) {
            return Ok(statement.clone());
        }
        let statement = self.tx.prepare(sql)?;
        self.statements.0.insert(sql.to_owned(), statement.clone());
        Ok(statement)
    }

    /// Runs a statement; the rows it changed.
    pub fn execute(&mut self, sql: &str, params: Params<'_>) -> anyhow::Result<u64> {
        let statement = self.statement(sql)?;
        Ok(self.tx.execute(&statement, params)?)
    }

    pub fn query(&mut self, sql: &str, params: Params<'_>) -> anyhow::Result<Vec<Row>> {
        let statement = self.statement(sql)?;
        Ok(self.tx.query(&statement, params)?)
    }

    pub fn query_opt(&mut self, sql: &str, params: Params<'_>) -> anyhow::Result<Option<Row>> {
        let statement = self.statement(sql)?;
        Ok(self.tx.query_opt(&statement, params)?)
    }

    pub fn commit(self) -> anyhow::Result<()> {
        Ok(self.tx.commit()?)
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
