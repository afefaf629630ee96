//! Therapist accounts and their login sessions.
//!
//! Names and e-mail addresses are sealed; the login e-mail is found through
//! a keyed lookup hash. Sessions are bearer tokens of which only the hash is
//! stored, each with its own CSRF token.

use chrono::{DateTime, Duration, Utc};
use konsult_domain::{ClinicId, TherapistId};
use serde::{Deserialize, Serialize};
use sqlx::Row;

use crate::audit::{self, Actor};
use crate::crypto::{new_token, token_hash};
use crate::{get_flag, get_uuid, ms, Result, ResultExt, Store, StoreError, Tx};

/// What a therapist account may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Runs consultations and manages patients.
    Therapist,
    /// Also manages accounts, clinic settings, fee tables and billing export.
    Admin,
}

impl Role {
    fn as_str(self) -> &'static str {
        match self {
            Role::Therapist => "therapist",
            Role::Admin => "admin",
        }
    }

    fn parse(s: &str) -> Result<Self> {
        match s {
            "therapist" => Ok(Role::Therapist),
            "admin" => Ok(Role::Admin),
            other => Err(StoreError::Corrupt(format!("role {other:?}"))),
        }
    }
}

/// A new account; the password is already hashed (argon2id) by the caller.
#[derive(Debug, Clone)]
pub struct NewTherapist {
    /// Full name.
    pub name: String,
    /// Login e-mail.
    pub email: String,
    /// PHC string of the password hash.
    pub password_hash: String,
    /// Role.
    pub role: Role,
}

/// A therapist account as shown to the clinic.
#[derive(Debug, Clone, Serialize)]
pub struct Therapist {
    /// Id.
    pub id: TherapistId,
    /// Clinic.
    pub clinic: ClinicId,
    /// Full name.
    pub name: String,
    /// Login e-mail.
    pub email: String,
    /// Role.
    pub role: Role,
    /// Whether the account can log in.
    pub active: bool,
}

/// A logged-in session.
#[derive(Debug, Clone)]
pub struct Session {
    /// Who.
    pub therapist: TherapistId,
    /// Their clinic (every query is scoped to it).
    pub clinic: ClinicId,
    /// Their role.
    pub role: Role,
    /// The CSRF token that state-changing requests must echo.
    pub csrf_token: String,
    /// When it ends.
    pub expires_at: DateTime<Utc>,
}

fn normalise_email(email: &str) -> String {
    email.trim().to_lowercase()
}

pub(crate) async fn insert_therapist(
    store: &Store,
    tx: &mut Tx,
    clinic: ClinicId,
    t: NewTherapist,
    now: DateTime<Utc>,
) -> Result<TherapistId> {
    let id = TherapistId::from_uuid(uuid::Uuid::new_v4());
    let c = store.cipher();
    let email = normalise_email(&t.email);
    sqlx::query(
        "INSERT INTO therapists (id, clinic_id, email_lookup, email_enc, name_enc, password_hash, role, active, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, 1, $8)",
    )
    .bind(id.to_string())
    .bind(clinic.to_string())
    .bind(c.lookup_hash("therapist.email", &email))
    .bind(c.seal(&format!("therapists.email:{id}"), &email))
    .bind(c.seal(&format!("therapists.name:{id}"), &t.name))
    .bind(&t.password_hash)
    .bind(t.role.as_str())
    .bind(ms(now))
    .execute(tx.conn())
    .await
    .on_unique("an account with this e-mail already exists")?;
    Ok(id)
}

impl Store {
    fn therapist_from_row(&self, row: &sqlx::any::AnyRow) -> Result<Therapist> {
        let id = TherapistId::from_uuid(get_uuid(row, "id")?);
        let c = self.cipher();
        Ok(Therapist {
            id,
            clinic: ClinicId::from_uuid(get_uuid(row, "clinic_id")?),
            name: c.open(
                &format!("therapists.name:{id}"),
                &row.try_get::<Vec<u8>, _>("name_enc")?,
            )?,
            email: c.open(
                &format!("therapists.email:{id}"),
                &row.try_get::<Vec<u8>, _>("email_enc")?,
            )?,
            role: Role::parse(&row.try_get::<String, _>("role")?)?,
            active: get_flag(row, "active")?,
        })
    }

    /// Creates an account in the admin's clinic.
    pub async fn create_therapist(
        &self,
        clinic: ClinicId,
        by: TherapistId,
        t: NewTherapist,
        now: DateTime<Utc>,
    ) -> Result<TherapistId> {
        let mut tx = self.begin().await?;
        let id = insert_therapist(self, &mut tx, clinic, t, now).await?;
        audit::append(
            &mut tx,
            clinic,
            now,
            Actor::Therapist(by),
            "therapist.create",
            None,
            Some(&id.to_string()),
        )
        .await?;
        tx.commit().await?;
        Ok(id)
    }

    /// The clinic's accounts.
    pub async fn therapists(&self, clinic: ClinicId) -> Result<Vec<Therapist>> {
        let rows = sqlx::query(
            "SELECT id, clinic_id, name_enc, email_enc, role, active FROM therapists
             WHERE clinic_id = $1 ORDER BY created_at",
        )
        .bind(clinic.to_string())
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|r| self.therapist_from_row(r)).collect()
    }

    /// One account of the clinic.
    pub async fn therapist(&self, clinic: ClinicId, id: TherapistId) -> Result<Therapist> {
        let row = sqlx::query(
            "SELECT id, clinic_id, name_enc, email_enc, role, active FROM therapists
             WHERE clinic_id = $1 AND id = $2",
        )
        .bind(clinic.to_string())
        .bind(id.to_string())
        .fetch_optional(&self.pool)
        .await?
        .ok_or(StoreError::NotFound("therapist"))?;
        self.therapist_from_row(&row)
    }

    /// The account and password hash for a login e-mail, if any and active.
    pub async fn login_candidate(&self, email: &str) -> Result<Option<(Therapist, String)>> {
        let lookup = self
            .cipher()
            .lookup_hash("therapist.email", &normalise_email(email));
        let row = sqlx::query(
            "SELECT id, clinic_id, name_enc, email_enc, role, active, password_hash FROM therapists
             WHERE email_lookup = $1 AND active = 1",
        )
        .bind(lookup)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| Ok((self.therapist_from_row(&r)?, r.try_get("password_hash")?)))
            .transpose()
    }

    /// Starts a session; returns the bearer token (for the cookie) and the
    /// session with its CSRF token.
    pub async fn create_session(
        &self,
        therapist: &Therapist,
        now: DateTime<Utc>,
        ttl: Duration,
    ) -> Result<(String, Session)> {
        let token = new_token();
        let session = Session {
            therapist: therapist.id,
            clinic: therapist.clinic,
            role: therapist.role,
            csrf_token: new_token(),
            expires_at: now + ttl,
        };
        let mut tx = self.begin().await?;
        sqlx::query("DELETE FROM sessions WHERE expires_at <= $1")
            .bind(ms(now))
            .execute(tx.conn())
            .await?;
        sqlx::query(
            "INSERT INTO sessions (token_hash, therapist_id, clinic_id, csrf_token, created_at, expires_at)
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(token_hash(&token))
        .bind(therapist.id.to_string())
        .bind(therapist.clinic.to_string())
        .bind(&session.csrf_token)
        .bind(ms(now))
        .bind(ms(session.expires_at))
        .execute(tx.conn())
        .await?;
        tx.commit().await?;
        Ok((token, session))
    }

    /// The live session of a bearer token, if it exists and has not expired
    /// and its account is still active.
    pub async fn session(&self, token: &str, now: DateTime<Utc>) -> Result<Option<Session>> {
        let row = sqlx::query(
            "SELECT s.therapist_id, s.clinic_id, s.csrf_token, s.expires_at, t.role
             FROM sessions s JOIN therapists t ON t.id = s.therapist_id
             WHERE s.token_hash = $1 AND s.expires_at > $2 AND t.active = 1",
        )
        .bind(token_hash(token))
        .bind(ms(now))
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| {
            Ok(Session {
                therapist: TherapistId::from_uuid(get_uuid(&r, "therapist_id")?),
                clinic: ClinicId::from_uuid(get_uuid(&r, "clinic_id")?),
                role: Role::parse(&r.try_get::<String, _>("role")?)?,
                csrf_token: r.try_get("csrf_token")?,
                expires_at: crate::from_ms(r.try_get("expires_at")?)?,
            })
        })
        .transpose()
    }

    /// Ends a session.
    pub async fn delete_session(&self, token: &str) -> Result<()> {
        let mut tx = self.begin().await?;
        sqlx::query("DELETE FROM sessions WHERE token_hash = $1")
            .bind(token_hash(token))
            .execute(tx.conn())
            .await?;
        tx.commit().await
    }
}
