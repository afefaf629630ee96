//! The pump's room context: whatever the pump hands over with a join (or a
//! restore) comes back with the room's outputs, so the pump needs no room
//! table of its own. The room's writes and its close carry the latest
//! join's; an admission check carries the patient's.

mod common;

use common::*;
use konsult_protocol::{ClientMessage, Role};
use konsult_signal::{Config, Hub, Output, RoomContext};

/// The context each write, admission check and room close from `h.log[from..]`
/// carried, in order, as text.
fn echoed(h: &Harness, from: usize) -> Vec<(&'static str, String)> {
    h.log[from..]
        .iter()
        .filter_map(|output| match output {
            Output::Write { context, .. } => Some(("write", context)),
            Output::AdmissionCheck { context, .. } => Some(("check", context)),
            Output::RoomClosed { context, .. } => Some(("closed", context)),
            Output::Send { .. } | Output::Close { .. } => None,
        })
        .map(|(kind, context)| {
            let text = String::from_utf8(context.as_bytes().to_vec()).unwrap();
            (kind, text)
        })
        .collect()
}

fn context(text: &str) -> RoomContext {
    RoomContext::new(text.as_bytes().to_vec())
}

fn pairs(expected: &[(&'static str, &str)]) -> Vec<(&'static str, String)> {
    expected.iter().map(|(k, t)| (*k, t.to_string())).collect()
}

#[test]
fn the_latest_join_s_context_comes_back_and_a_check_carries_the_patient_s() {
    let mut h = Harness::new();
    h.context = context("therapist-1");
    let mark = h.log.len();
    let t = h.join(Role::Therapist);
    assert_eq!(echoed(&h, mark), pairs(&[("write", "therapist-1")]));

    h.context = context("patient-1");
    let mark = h.log.len();
    h.join(Role::Patient);
    assert_eq!(echoed(&h, mark), pairs(&[("write", "patient-1")]));

    // The therapist's new device takes over: its context is the room's now.
    h.context = context("therapist-2");
    let mark = h.log.len();
    let t2 = h.join(Role::Therapist);
    assert_eq!(h.take_closes().first().map(|c| c.0), Some(t));
    assert_eq!(echoed(&h, mark), pairs(&[("write", "therapist-2")]));

    // The admission check is about the patient: the patient's context.
    let mark = h.log.len();
    h.send(t2, &ClientMessage::Admit {});
    assert_eq!(echoed(&h, mark), pairs(&[("check", "patient-1")]));
    let mark = h.log.len();
    h.answer_check(Ok(()));
    assert_eq!(echoed(&h, mark), pairs(&[("write", "therapist-2")]));

    // A join the room refuses (the consultation is over) changes nothing.
    h.hold_writes();
    let mark = h.log.len();
    h.send(t2, &ClientMessage::Leave {});
    h.context = context("too-late");
    h.join(Role::Patient);
    h.commit_all();
    assert_eq!(
        echoed(&h, mark),
        pairs(&[("write", "therapist-2"), ("closed", "therapist-2")])
    );
}

#[test]
fn a_restored_room_carries_the_restore_s_context_until_someone_joins_again() {
    let mut h = Harness::new();
    let t = h.join(Role::Therapist);
    h.join(Role::Patient);
    let rt = h.resume_for(t);
    let record = h.saved.clone().expect("the room was saved");

    h.hub = Hub::new(Config::default());
    let mark = h.log.len();
    h.hub
        .restore(h.now, CONSULTATION, &record, context("restored"))
        .unwrap();
    // The therapist comes back; the patient has not yet.
    h.context = context("therapist-back");
    let t2 = h.join_resume(Role::Therapist, rt);
    h.send(t2, &ClientMessage::Admit {});
    assert_eq!(
        echoed(&h, mark),
        pairs(&[("check", "restored")]),
        "the patient's context is the restore's"
    );
    h.answer_check(Err(vec!["assessment_revoked".into()]));
    assert_eq!(
        echoed(&h, mark)[1..],
        pairs(&[("write", "therapist-back")]),
        "the room's is the therapist's join's"
    );

    // Nobody comes back to a second restored room: everything it says
    // until it closes carries the restore's context.
    let mut h = Harness::new();
    h.admitted_pair();
    let record = h.saved.clone().expect("the room was saved");
    h.hub = Hub::new(Config::default());
    let mark = h.log.len();
    h.hub
        .restore(h.now, CONSULTATION, &record, context("restored"))
        .unwrap();
    h.advance(Config::default().restore_grace + secs(1));
    let echoes = echoed(&h, mark);
    assert!(echoes.len() >= 2, "{echoes:?}");
    assert!(
        echoes.iter().all(|(_, text)| text == "restored"),
        "{echoes:?}"
    );
    assert_eq!(echoes.last().unwrap().0, "closed");
}
