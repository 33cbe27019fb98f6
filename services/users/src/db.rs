//! Accounts over SQLite or PostgreSQL (kit::db). Every write is one
//! statement: the UNIQUE email makes concurrent sign-ups safe, and a role
//! change edits the role list inside its UPDATE, so grants never race.

use crate::error::{Error, Result};
use kit::db::{Backend, DbConfig};
use serde::Serialize;
use sqlx::any::AnyRow;
use sqlx::{AnyPool, Row};

static SQLITE_MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

const COLS: &str = "id, email, roles, created_at";

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct User {
    pub id: String,
    pub email: String,
    pub roles: Vec<String>,
    pub created_at: String,
}

#[derive(Debug, Clone)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
}

fn user(r: &AnyRow) -> Result<User, sqlx::Error> {
    let roles: String = r.try_get("roles")?;
    Ok(User {
        id: r.try_get("id")?,
        email: r.try_get("email")?,
        roles: roles.split_whitespace().map(str::to_owned).collect(),
        created_at: r.try_get("created_at")?,
    })
}

/// A random id: 128 bits, hex.
fn new_id() -> String {
    format!("u{:032x}", rand::random::<u128>())
}

impl Store {
    pub async fn connect(c: &DbConfig) -> anyhow::Result<Self> {
        let (pool, backend) = kit::db::connect(c, &SQLITE_MIGRATOR, &POSTGRES_MIGRATOR)
            .await
            .map_err(anyhow::Error::msg)?;
        Ok(Self { pool, backend })
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }

    pub async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    pub async fn create(&self, email: &str, password_hash: &str) -> Result<User> {
        let sql = format!(
            "INSERT INTO users (id, email, password_hash, roles, created_at) \
             VALUES ($1, $2, $3, '', $4) RETURNING {COLS}"
        );
        let row = sqlx::query(&sql)
            .bind(new_id())
            .bind(email)
            .bind(password_hash)
            .bind(kit::db::now_rfc3339())
            .fetch_one(&self.pool)
            .await
            .map_err(|e| match &e {
                sqlx::Error::Database(d) if d.is_unique_violation() => Error::EmailTaken,
                _ => e.into(),
            })?;
        Ok(user(&row)?)
    }

    /// The account and its password hash.
    pub async fn by_email(&self, email: &str) -> Result<Option<(User, String)>> {
        let sql = format!("SELECT {COLS}, password_hash FROM users WHERE email = $1");
        let row = sqlx::query(&sql)
            .bind(email)
            .fetch_optional(&self.pool)
            .await?;
        match row {
            Some(r) => Ok(Some((user(&r)?, r.try_get("password_hash")?))),
            None => Ok(None),
        }
    }

    pub async fn by_id(&self, id: &str) -> Result<Option<User>> {
        let sql = format!("SELECT {COLS} FROM users WHERE id = $1");
        let row = sqlx::query(&sql)
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.as_ref().map(user).transpose()?)
    }

    /// Adds or removes `role` (a word of letters) in one statement.
    pub async fn set_role(&self, id: &str, role: &str, on: bool) -> Result<Option<User>> {
        // Space-padded so " admin " matches the whole word only.
        let sql = if on {
            format!(
                "UPDATE users SET roles = CASE WHEN (' ' || roles || ' ') LIKE ('% ' || $1 || ' %') \
                 THEN roles ELSE TRIM(roles || ' ' || $1) END WHERE id = $2 RETURNING {COLS}"
            )
        } else {
            format!(
                "UPDATE users SET roles = TRIM(REPLACE(' ' || roles || ' ', ' ' || $1 || ' ', ' ')) \
                 WHERE id = $2 RETURNING {COLS}"
            )
        };
        let row = sqlx::query(&sql)
            .bind(role)
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.as_ref().map(user).transpose()?)
    }
}
