//! The audit chain against someone who can write the database but does not
//! hold the data-at-rest key: deleting an entry and recomputing the chain
//! as SHA-256 (what the chain used to be) no longer verifies, not even after
//! a restart; a chain written before keying is re-keyed when the
//! installation asks (the server does, once, at its first start after the
//! upgrade), never by opening the database; an exported signed head catches
//! a truncated tail that the chain alone cannot.

use chrono::{DateTime, Utc};
use konsult_domain::{ClinicId, Speciale};
use konsult_store::audit::{Actor, ChainStatus, HeadCheck};
use konsult_store::clinics::NewClinic;
use konsult_store::patients::PatientData;
use konsult_store::therapists::{NewTherapist, Role};
use konsult_store::{Cipher, Store};
use sqlx::Row;

const KEY: [u8; 32] = [7; 32];

async fn open(url: &str) -> Store {
    Store::connect(url, Cipher::from_key(&KEY).unwrap())
        .await
        .unwrap()
}

/// A clinic with an admin and `patients` patients: one audit entry each,
/// after the clinic's own.
async fn clinic_with_entries(store: &Store, patients: usize) -> ClinicId {
    let now = Utc::now();
    let token = store.issue_setup_token(now).await.unwrap().unwrap();
    let (clinic, admin) = store
        .setup_first_clinic(
            &token,
            NewClinic {
                name: "Klinik".into(),
                ydernummer: "123456".into(),
                specialer: vec![Speciale::Almen],
            },
            NewTherapist {
                name: "Admin".into(),
                email: "admin@example.org".into(),
                password_hash: "x".into(),
                role: Role::Admin,
            },
            now,
        )
        .await
        .unwrap();
    for n in 0..patients {
        store
            .create_patient(
                clinic,
                Actor::Therapist(admin),
                PatientData {
                    name: format!("Patient {n}"),
                    ..PatientData::default()
                },
                now,
            )
            .await
            .unwrap();
    }
    clinic
}

async fn raw_pool(url: &str) -> sqlx::SqlitePool {
    sqlx::SqlitePool::connect(url).await.unwrap()
}

#[tokio::test]
async fn deleting_an_entry_and_recomputing_the_chain_without_the_key_is_caught() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("k.db").display());
    let store = open(&url).await;
    let clinic = clinic_with_entries(&store, 4).await;
    assert_eq!(
        store.verify_audit_chain(clinic).await.unwrap(),
        ChainStatus::Intact { entries: 5 }
    );
    let heads = store.signed_heads(Utc::now()).await.unwrap();
    assert!(heads[0].head.starts_with("k1:"), "{heads:?}");

    // Entry 3 goes; the ones after move up; the chain is recomputed.
    let pool = raw_pool(&url).await;
    let c = clinic.to_string();
    sqlx::query("DELETE FROM audit_log WHERE clinic_id = ? AND seq = 3")
        .bind(&c)
        .execute(&pool)
        .await
        .unwrap();
    sqlx::query("UPDATE audit_log SET seq = seq - 1 WHERE clinic_id = ? AND seq > 3")
        .bind(&c)
        .execute(&pool)
        .await
        .unwrap();
    store.rewrite_chain_unkeyed(clinic).await.unwrap();
    assert_eq!(
        store.verify_audit_chain(clinic).await.unwrap(),
        ChainStatus::Broken { at_seq: 1 },
        "a chain recomputed without the key does not verify"
    );
    assert_eq!(
        store.check_signed_head(&heads[0]).await.unwrap(),
        HeadCheck::ChainBroken { at_seq: 1 }
    );
    // Opening the database again (a restart) does not launder the forgery:
    // re-keying an unkeyed chain is not part of opening the store.
    drop(store);
    let store = open(&url).await;
    assert_eq!(
        store.verify_audit_chain(clinic).await.unwrap(),
        ChainStatus::Broken { at_seq: 1 },
        "a restart re-keyed a chain recomputed without the key"
    );
}

#[tokio::test]
async fn a_chain_from_before_the_key_is_rekeyed_when_the_installation_asks() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("k.db").display());
    let clinic = {
        let store = open(&url).await;
        clinic_with_entries(&store, 2).await
    };
    let store = open(&url).await;
    // What the database held before keying: SHA-256 hashes throughout.
    store.rewrite_chain_unkeyed(clinic).await.unwrap();
    assert_eq!(
        store.verify_audit_chain(clinic).await.unwrap(),
        ChainStatus::Broken { at_seq: 1 },
        "opening the store re-keys nothing"
    );
    // The server does this once per installation (its marker lives next to
    // the key file).
    assert_eq!(store.rekey_audit_chains().await.unwrap(), 1);
    assert_eq!(
        store.verify_audit_chain(clinic).await.unwrap(),
        ChainStatus::Intact { entries: 4 },
        "three entries re-keyed and the re-keying recorded"
    );
    let entries = store.audit_entries(clinic, 0, 10).await.unwrap();
    assert_eq!(entries.last().unwrap().action, "audit.rekeyed");
    assert!(entries.iter().all(|e| e.hash.starts_with("k1:")));
    // A keyed chain is never re-keyed again.
    assert_eq!(store.rekey_audit_chains().await.unwrap(), 0);
    drop(store);
    let store = open(&url).await;
    assert_eq!(
        store.verify_audit_chain(clinic).await.unwrap(),
        ChainStatus::Intact { entries: 4 }
    );
}

#[tokio::test]
async fn an_exported_head_catches_a_truncated_tail_and_forged_heads() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("k.db").display());
    let store = open(&url).await;
    let clinic = clinic_with_entries(&store, 3).await;
    let exported = store.signed_heads(Utc::now()).await.unwrap();
    let head = exported[0].clone();
    assert_eq!(head.seq, 4);
    assert_eq!(
        store.check_signed_head(&head).await.unwrap(),
        HeadCheck::Holds
    );
    // A later entry does not matter.
    clinic_entries_after(&store, clinic).await;
    assert_eq!(
        store.check_signed_head(&head).await.unwrap(),
        HeadCheck::Holds
    );
    // A forged or altered export is refused.
    let mut forged = head.clone();
    forged.seq = 2;
    assert_eq!(
        store.check_signed_head(&forged).await.unwrap(),
        HeadCheck::BadSignature
    );
    let mut other_key = head.clone();
    other_key.signature = "00".repeat(32);
    assert_eq!(
        store.check_signed_head(&other_key).await.unwrap(),
        HeadCheck::BadSignature
    );
    // The last two entries removed and the head moved back: the chain still
    // verifies (every entry is genuine), the exported head does not.
    let pool = raw_pool(&url).await;
    let c = clinic.to_string();
    let kept: String = sqlx::query("SELECT hash FROM audit_log WHERE clinic_id = ? AND seq = 3")
        .bind(&c)
        .fetch_one(&pool)
        .await
        .unwrap()
        .get("hash");
    sqlx::query("DELETE FROM audit_log WHERE clinic_id = ? AND seq > 3")
        .bind(&c)
        .execute(&pool)
        .await
        .unwrap();
    sqlx::query("UPDATE audit_heads SET seq = 3, head = ? WHERE clinic_id = ?")
        .bind(&kept)
        .bind(&c)
        .execute(&pool)
        .await
        .unwrap();
    assert_eq!(
        store.verify_audit_chain(clinic).await.unwrap(),
        ChainStatus::Intact { entries: 3 }
    );
    assert_eq!(
        store.check_signed_head(&head).await.unwrap(),
        HeadCheck::Rewritten
    );
}

/// One more audited action of the clinic.
async fn clinic_entries_after(store: &Store, clinic: ClinicId) {
    let admin = store.audit_entries(clinic, 0, 1).await.unwrap()[0]
        .actor
        .clone();
    let Some(Actor::Therapist(admin)) = Actor::parse(&admin) else {
        panic!("the first entry is the admin's: {admin}")
    };
    let at: DateTime<Utc> = Utc::now();
    store
        .create_patient(
            clinic,
            Actor::Therapist(admin),
            PatientData {
                name: "Sen patient".into(),
                ..PatientData::default()
            },
            at,
        )
        .await
        .unwrap();
}
