//! Group commit of the signaling's call writes (`Store::write_calls`): the
//! writes of several consultations are answered in order, a write the
//! lifecycle refuses (a consultation that is over) is refused alone and
//! leaves nothing behind, and the others are committed with their events,
//! saved rooms and audit entries, on SQLite (one transaction, then one each
//! after a refusal) and on PostgreSQL (one each).

use crate::common;

use chrono::Duration;
use common::signal::*;
use common::{Db, TestApp};
use konsult_domain::{CallEvent, ConsultationState, EndReason};
use konsult_store::audit::ChainStatus;
use konsult_store::consultations::{CallWriteRequest, RoomWrite};
use konsult_store::StoreError;

async fn a_refused_write_costs_the_others_nothing(db: Db) {
    let app = TestApp::spawn(db).await;
    let fx = clinic(&app, "Nord").await;
    let store = &app.state.store;
    let now = app.now();
    let [a, over, c, d] = [
        book(&app, &fx, Duration::minutes(5), false).await,
        book(&app, &fx, Duration::minutes(5), false).await,
        book(&app, &fx, Duration::minutes(5), false).await,
        book(&app, &fx, Duration::minutes(5), false).await,
    ];
    for event in [
        CallEvent::PatientWaiting,
        CallEvent::Admitted,
        CallEvent::Ended {
            reason: EndReason::TherapistEnded,
        },
    ] {
        store
            .record_call_event(fx.clinic, over.consultation, event, now)
            .await
            .unwrap();
    }
    let audited_before = store
        .audit_entries(fx.clinic, 0, 10_000)
        .await
        .unwrap()
        .len();

    let admit = [CallEvent::PatientWaiting, CallEvent::Admitted];
    let wait = [CallEvent::PatientWaiting];
    let request = |b: &Booking, events, room| CallWriteRequest {
        clinic: fx.clinic,
        id: b.consultation,
        events,
        room,
        at: now,
    };
    // Together first: every write is committed, in one batch on SQLite.
    let (answers, error) = store
        .write_calls(&[
            request(&a, &wait, RoomWrite::Save("{\"a\":1}")),
            request(&d, &wait, RoomWrite::Save("{\"d\":1}")),
        ])
        .await;
    assert!(error.is_none(), "{error:?}");
    assert_eq!(answers.len(), 2);
    assert!(answers.iter().all(Result::is_ok), "{answers:?}");

    // Then a batch with a write of a consultation that is over in the middle.
    let (answers, error) = store
        .write_calls(&[
            request(&a, &admit[1..], RoomWrite::Save("{\"a\":2}")),
            request(&over, &admit, RoomWrite::Save("{\"over\":1}")),
            request(&c, &wait, RoomWrite::Save("{\"c\":1}")),
            request(&d, &[], RoomWrite::Delete),
        ])
        .await;
    assert!(error.is_none(), "{error:?}");
    assert_eq!(answers.len(), 4, "one answer per write, in order");
    assert_eq!(
        answers[0].as_ref().unwrap().state,
        ConsultationState::InCall
    );
    assert!(
        matches!(answers[1], Err(StoreError::Conflict(_))),
        "{:?}",
        answers[1]
    );
    assert_eq!(
        answers[2].as_ref().unwrap().state,
        ConsultationState::Waiting
    );
    assert!(answers[3].is_ok());

    // What was committed, and nothing of the refused write.
    assert_eq!(
        event_kinds(&app, &fx, &a).await,
        ["patient_waiting", "admitted"]
    );
    assert_eq!(
        event_kinds(&app, &fx, &over).await,
        ["patient_waiting", "admitted", "ended"]
    );
    assert_eq!(event_kinds(&app, &fx, &c).await, ["patient_waiting"]);
    assert_eq!(event_kinds(&app, &fx, &d).await, ["patient_waiting"]);
    assert_eq!(stored(&app, &fx, &a).await.state, ConsultationState::InCall);
    assert_eq!(
        stored(&app, &fx, &over).await.state,
        ConsultationState::Ended
    );
    let rooms: Vec<_> = store
        .saved_rooms()
        .await
        .unwrap()
        .into_iter()
        .map(|r| (r.consultation, r.record))
        .collect();
    assert_eq!(rooms.len(), 2, "{rooms:?}");
    assert!(rooms.contains(&(a.consultation, "{\"a\":2}".to_owned())));
    assert!(rooms.contains(&(c.consultation, "{\"c\":1}".to_owned())));
    // One audit entry: the admission of `a`, chained.
    let audit = store.audit_entries(fx.clinic, 0, 10_000).await.unwrap();
    let new: Vec<_> = audit[audited_before..]
        .iter()
        .map(|e| &e.action)
        .filter(|action| action.starts_with("call."))
        .collect();
    assert_eq!(new, ["call.admitted"]);
    assert!(matches!(
        store.verify_audit_chain(fx.clinic).await.unwrap(),
        ChainStatus::Intact { .. }
    ));
    app.stop().await;
}

crate::on_both_databases!(
    a_refused_write_costs_the_others_nothing,
    super::a_refused_write_costs_the_others_nothing
);
