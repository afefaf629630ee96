//! Therapist accounts and their login sessions.
//!
//! Names and e-mail addresses are sealed; the login e-mail is found through
//! a keyed lookup hash, unique within a clinic (the same address may have an
//! account in two clinics, and an admin of one never learns of the other).
//! Sessions are bearer tokens of which only the hash is stored, each with
//! its own CSRF token.
//!
//! Access can be taken away: a password change or reset, a deactivation or
//! "log out everywhere" deletes sessions in the same transaction as its
//! audit entry, and returns the deleted sessions' keys so the caller can end
//! their signaling connections too.

use chrono::{DateTime, Duration, Utc};
use konsult_domain::{ClinicId, TherapistId};
use serde::{Deserialize, Serialize};
use sqlx::Row;

use crate::audit::{self, Actor};
use crate::crypto::{new_token, token_hash};
use crate::{get_flag, get_uuid, ms, Result, ResultExt, Store, StoreError, Tx};

/// What an account may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Runs consultations and manages patients.
    Therapist,
    /// Also manages accounts, clinic settings, fee tables and billing export.
    Admin,
    /// Books consultations and sees the day; no clinical data (journal
    /// notes, assessments, safety confirmations, exports) and no calls.
    Secretary,
}

impl Role {
    /// The stored `role` and `clinical` columns (the role column's CHECK
    /// predates secretaries: a secretary is a therapist without clinical
    /// access).
    fn columns(self) -> (&'static str, i64) {
        match self {
            Role::Therapist => ("therapist", 1),
            Role::Admin => ("admin", 1),
            Role::Secretary => ("therapist", 0),
        }
    }

    /// The role of a stored account row (`role` and `clinical` columns).
    fn of_row(row: &sqlx::any::AnyRow) -> Result<Self> {
        let role: String = row.try_get("role")?;
        match (role.as_str(), get_flag(row, "clinical")?) {
            ("admin", _) => Ok(Role::Admin),
            ("therapist", true) => Ok(Role::Therapist),
            ("therapist", false) => Ok(Role::Secretary),
            (other, _) => Err(StoreError::Corrupt(format!("role {other:?}"))),
        }
    }

    /// Whether the account may see clinical data and run calls.
    pub fn is_clinical(self) -> bool {
        self != Role::Secretary
    }

    /// The wire name (`therapist`, `admin`, `secretary`).
    pub fn code(self) -> &'static str {
        match self {
            Role::Therapist => "therapist",
            Role::Admin => "admin",
            Role::Secretary => "secretary",
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
#[derive(Clone)]
pub struct Session {
    /// Names the session without granting it: the stored hash of its
    /// token ([`SessionKey`]).
    pub key: SessionKey,
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

impl Session {
    /// A session from a row with `session_therapist_id` (aliased, as a
    /// consultation row has its own `therapist_id`), `clinic_id`,
    /// `csrf_token`, `expires_at` and the therapist's `role` and `clinical`.
    pub(crate) fn of_row(key: SessionKey, r: &sqlx::any::AnyRow) -> Result<Self> {
        Ok(Session {
            key,
            therapist: TherapistId::from_uuid(get_uuid(r, "session_therapist_id")?),
            clinic: ClinicId::from_uuid(get_uuid(r, "clinic_id")?),
            role: Role::of_row(r)?,
            csrf_token: r.try_get("csrf_token")?,
            expires_at: crate::from_ms(r.try_get("expires_at")?)?,
        })
    }
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The CSRF token is a secret of the session; the key is not printed
        // either, so that logs never link requests to a session.
        f.debug_struct("Session")
            .field("therapist", &self.therapist)
            .field("clinic", &self.clinic)
            .field("role", &self.role)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

/// A session's name: the SHA-256 of its bearer token, as stored. Knowing it
/// grants nothing; the signaling layer keys a therapist's connections by it
/// so that ending a session ends them.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct SessionKey(String);

impl SessionKey {
    /// The key of a bearer token.
    pub fn of_token(token: &str) -> Self {
        Self(token_hash(token))
    }

    /// The key as text: the token's SHA-256 in hex, as stored, and as told
    /// to another node of the cluster when the session ended.
    pub fn as_hex(&self) -> &str {
        &self.0
    }

    /// A key another node told of; `None` unless it is a SHA-256 in hex.
    pub fn from_hex(hex: &str) -> Option<Self> {
        let valid = hex.len() == 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        valid.then(|| Self(hex.to_owned()))
    }
}

impl std::fmt::Debug for SessionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SessionKey(..)")
    }
}

/// What ending sessions ended: their keys, for the signaling layer.
pub type EndedSessions = Vec<SessionKey>;

fn normalise_email(email: &str) -> String {
    email.trim().to_lowercase()
}

/// The keyed hash that finds a login e-mail (in any clinic).
fn login_lookup(store: &Store, email: &str) -> String {
    store
        .cipher()
        .lookup_hash("therapist.email", &normalise_email(email))
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
    // email_lookup keeps its installation-wide UNIQUE constraint (migration
    // 0005): it gets the hash of clinic and e-mail, unique exactly when the
    // address is unique in the clinic. A duplicate in another clinic
    // collides with nothing, so creating an account tells the admin nothing
    // about other clinics.
    sqlx::query(
        "INSERT INTO therapists (id, clinic_id, email_lookup, login_lookup, email_enc, name_enc, password_hash, role, clinical, active, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 1, $10)",
    )
    .bind(id.to_string())
    .bind(clinic.to_string())
    .bind(c.lookup_hash("therapist.email_in_clinic", &format!("{clinic}\n{email}")))
    .bind(login_lookup(store, &email))
    .bind(c.seal(&format!("therapists.email:{id}"), &email))
    .bind(c.seal(&format!("therapists.name:{id}"), &t.name))
    .bind(&t.password_hash)
    .bind(t.role.columns().0)
    .bind(t.role.columns().1)
    .bind(ms(now))
    .execute(tx.conn())
    .await
    .on_unique("an account with this e-mail already exists in the clinic")?;
    Ok(id)
}

/// How many sessions one account may try at login: the number of clinics
/// that can share one login e-mail is bounded by what a login checks.
pub const MAX_LOGIN_CANDIDATES: i64 = 8;

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
            role: Role::of_row(row)?,
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
            "SELECT id, clinic_id, name_enc, email_enc, role, clinical, active FROM therapists
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
            "SELECT id, clinic_id, name_enc, email_enc, role, clinical, active FROM therapists
             WHERE clinic_id = $1 AND id = $2",
        )
        .bind(clinic.to_string())
        .bind(id.to_string())
        .fetch_optional(&self.pool)
        .await?
        .ok_or(StoreError::NotFound("therapist"))?;
        self.therapist_from_row(&row)
    }

    /// The active accounts with this login e-mail and their password
    /// hashes, oldest first: one per clinic where the address has an
    /// account (at most [`MAX_LOGIN_CANDIDATES`]).
    pub async fn login_candidates(&self, email: &str) -> Result<Vec<(Therapist, String)>> {
        let rows = sqlx::query(
            "SELECT id, clinic_id, name_enc, email_enc, role, clinical, active, password_hash FROM therapists
             WHERE login_lookup = $1 AND active = 1 ORDER BY created_at, id LIMIT $2",
        )
        .bind(login_lookup(self, email))
        .bind(MAX_LOGIN_CANDIDATES)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| Ok((self.therapist_from_row(r)?, r.try_get("password_hash")?)))
            .collect()
    }

    /// The first of [`Store::login_candidates`], for callers that know the
    /// address has an account in one clinic only.
    pub async fn login_candidate(&self, email: &str) -> Result<Option<(Therapist, String)>> {
        Ok(self.login_candidates(email).await?.into_iter().next())
    }

    /// The password hash of an active account of the clinic (to check the
    /// current password before a change).
    pub async fn password_hash(&self, clinic: ClinicId, id: TherapistId) -> Result<String> {
        sqlx::query_scalar(
            "SELECT password_hash FROM therapists WHERE clinic_id = $1 AND id = $2 AND active = 1",
        )
        .bind(clinic.to_string())
        .bind(id.to_string())
        .fetch_optional(&self.pool)
        .await?
        .ok_or(StoreError::NotFound("therapist"))
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
            key: SessionKey::of_token(&token),
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
        .bind(&session.key.0)
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
        let key = SessionKey::of_token(token);
        let row = sqlx::query(
            "SELECT s.therapist_id AS session_therapist_id, s.clinic_id, s.csrf_token, s.expires_at, t.role, t.clinical
             FROM sessions s JOIN therapists t ON t.id = s.therapist_id
             WHERE s.token_hash = $1 AND s.expires_at > $2 AND t.active = 1",
        )
        .bind(&key.0)
        .bind(ms(now))
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| Session::of_row(key, &r)).transpose()
    }

    /// Which of `keys` name sessions that are gone: logged out, ended by a
    /// password change, a reset or "log out everywhere", of a deactivated
    /// account, or expired and purged. For a node of a cluster to find the
    /// connections it must end even when it missed being told.
    pub async fn ended_sessions(&self, keys: &[SessionKey]) -> Result<Vec<SessionKey>> {
        let mut ended = Vec::new();
        // Within every database's limit of bound parameters.
        for chunk in keys.chunks(500) {
            let placeholders = (1..=chunk.len())
                .map(|i| format!("${i}"))
                .collect::<Vec<_>>()
                .join(", ");
            let sql = format!(
                "SELECT s.token_hash FROM sessions s JOIN therapists t ON t.id = s.therapist_id
                 WHERE t.active = 1 AND s.token_hash IN ({placeholders})"
            );
            let mut query = sqlx::query_scalar::<_, String>(&sql);
            for key in chunk {
                query = query.bind(&key.0);
            }
            let open: std::collections::HashSet<String> =
                query.fetch_all(self.reader()).await?.into_iter().collect();
            ended.extend(chunk.iter().filter(|k| !open.contains(&k.0)).cloned());
        }
        Ok(ended)
    }

    /// Ends a session (logout); returns its key.
    pub async fn delete_session(&self, token: &str) -> Result<SessionKey> {
        let key = SessionKey::of_token(token);
        let mut tx = self.begin().await?;
        sqlx::query("DELETE FROM sessions WHERE token_hash = $1")
            .bind(&key.0)
            .execute(tx.conn())
            .await?;
        tx.commit().await?;
        Ok(key)
    }

    /// "Log out everywhere": ends every session of the account, audited.
    pub async fn revoke_sessions(
        &self,
        clinic: ClinicId,
        therapist: TherapistId,
        now: DateTime<Utc>,
    ) -> Result<EndedSessions> {
        let mut tx = self.begin().await?;
        audit::append(
            &mut tx,
            clinic,
            now,
            Actor::Therapist(therapist),
            "therapist.sessions_revoked",
            None,
            Some(&therapist.to_string()),
        )
        .await?;
        let ended = end_sessions(&mut tx, clinic, therapist, None).await?;
        tx.commit().await?;
        Ok(ended)
    }

    /// The account holder changes their own password (the caller checked
    /// the current one): every other session of theirs ends; `keep` goes on.
    pub async fn change_password(
        &self,
        clinic: ClinicId,
        therapist: TherapistId,
        password_hash: &str,
        keep: &SessionKey,
        now: DateTime<Utc>,
    ) -> Result<EndedSessions> {
        let mut tx = self.begin().await?;
        audit::append(
            &mut tx,
            clinic,
            now,
            Actor::Therapist(therapist),
            "therapist.password_change",
            None,
            Some(&therapist.to_string()),
        )
        .await?;
        set_password_hash(&mut tx, clinic, therapist, password_hash).await?;
        let ended = end_sessions(&mut tx, clinic, therapist, Some(keep)).await?;
        tx.commit().await?;
        Ok(ended)
    }

    /// An admin sets another account's password: every session of that
    /// account ends.
    pub async fn reset_password(
        &self,
        clinic: ClinicId,
        by: TherapistId,
        therapist: TherapistId,
        password_hash: &str,
        now: DateTime<Utc>,
    ) -> Result<EndedSessions> {
        let mut tx = self.begin().await?;
        audit::append(
            &mut tx,
            clinic,
            now,
            Actor::Therapist(by),
            "therapist.password_reset",
            None,
            Some(&therapist.to_string()),
        )
        .await?;
        set_password_hash(&mut tx, clinic, therapist, password_hash).await?;
        let ended = end_sessions(&mut tx, clinic, therapist, None).await?;
        tx.commit().await?;
        Ok(ended)
    }

    /// An admin deactivates an account: it can no longer log in and every
    /// session of it ends. The clinic's last active admin cannot be
    /// deactivated (`last_admin`); deactivating an inactive account changes
    /// nothing and is not audited again.
    pub async fn deactivate_therapist(
        &self,
        clinic: ClinicId,
        by: TherapistId,
        therapist: TherapistId,
        now: DateTime<Utc>,
    ) -> Result<EndedSessions> {
        let mut tx = self.begin().await?;
        // Appending first takes the clinic's audit head row, which
        // serialises this with every other audited write of the clinic on
        // both databases: two admins deactivating each other at once cannot
        // both pass the last-admin check below.
        audit::append(
            &mut tx,
            clinic,
            now,
            Actor::Therapist(by),
            "therapist.deactivate",
            None,
            Some(&therapist.to_string()),
        )
        .await?;
        let row = sqlx::query(
            "SELECT role, clinical, active FROM therapists WHERE clinic_id = $1 AND id = $2",
        )
        .bind(clinic.to_string())
        .bind(therapist.to_string())
        .fetch_optional(tx.conn())
        .await?
        .ok_or(StoreError::NotFound("therapist"))?;
        if !get_flag(&row, "active")? {
            return Ok(Vec::new());
        }
        if Role::of_row(&row)? == Role::Admin {
            let others: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM therapists
                 WHERE clinic_id = $1 AND id <> $2 AND role = 'admin' AND active = 1",
            )
            .bind(clinic.to_string())
            .bind(therapist.to_string())
            .fetch_one(tx.conn())
            .await?;
            if others == 0 {
                return Err(StoreError::Refused {
                    code: "last_admin",
                    message: "the clinic's last active admin cannot be deactivated; make another account admin first".into(),
                });
            }
        }
        sqlx::query("UPDATE therapists SET active = 0 WHERE clinic_id = $1 AND id = $2")
            .bind(clinic.to_string())
            .bind(therapist.to_string())
            .execute(tx.conn())
            .await?;
        let ended = end_sessions(&mut tx, clinic, therapist, None).await?;
        tx.commit().await?;
        Ok(ended)
    }

    /// An admin reactivates an account: it can log in again (with its
    /// password as it was, or one an admin sets). Reactivating an active
    /// account changes nothing and is not audited again.
    pub async fn reactivate_therapist(
        &self,
        clinic: ClinicId,
        by: TherapistId,
        therapist: TherapistId,
        now: DateTime<Utc>,
    ) -> Result<()> {
        let mut tx = self.begin().await?;
        let changed = sqlx::query(
            "UPDATE therapists SET active = 1 WHERE clinic_id = $1 AND id = $2 AND active = 0",
        )
        .bind(clinic.to_string())
        .bind(therapist.to_string())
        .execute(tx.conn())
        .await?
        .rows_affected();
        if changed == 0 {
            // Active already, or not an account of this clinic (read after
            // the transaction: never a second connection inside one).
            drop(tx);
            self.therapist(clinic, therapist).await?;
            return Ok(());
        }
        audit::append(
            &mut tx,
            clinic,
            now,
            Actor::Therapist(by),
            "therapist.reactivate",
            None,
            Some(&therapist.to_string()),
        )
        .await?;
        tx.commit().await
    }
}

async fn set_password_hash(
    tx: &mut Tx,
    clinic: ClinicId,
    therapist: TherapistId,
    password_hash: &str,
) -> Result<()> {
    let changed =
        sqlx::query("UPDATE therapists SET password_hash = $1 WHERE clinic_id = $2 AND id = $3")
            .bind(password_hash)
            .bind(clinic.to_string())
            .bind(therapist.to_string())
            .execute(tx.conn())
            .await?
            .rows_affected();
    if changed == 0 {
        return Err(StoreError::NotFound("therapist"));
    }
    Ok(())
}

/// Deletes the account's sessions but `keep`; returns the deleted keys.
async fn end_sessions(
    tx: &mut Tx,
    clinic: ClinicId,
    therapist: TherapistId,
    keep: Option<&SessionKey>,
) -> Result<EndedSessions> {
    let keep = keep.map(|k| k.0.as_str()).unwrap_or("");
    let keys: Vec<String> = sqlx::query_scalar(
        "SELECT token_hash FROM sessions WHERE clinic_id = $1 AND therapist_id = $2 AND token_hash <> $3",
    )
    .bind(clinic.to_string())
    .bind(therapist.to_string())
    .bind(keep)
    .fetch_all(tx.conn())
    .await?;
    sqlx::query(
        "DELETE FROM sessions WHERE clinic_id = $1 AND therapist_id = $2 AND token_hash <> $3",
    )
    .bind(clinic.to_string())
    .bind(therapist.to_string())
    .bind(keep)
    .execute(tx.conn())
    .await?;
    Ok(keys.into_iter().map(SessionKey).collect())
}
