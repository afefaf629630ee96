//! The life of one video consultation, from scheduled to completed with a journal note.
//!
//! ```text
//! Scheduled ─open_window─▶ Open ─patient_arrived─▶ Waiting ─admit─▶ InCall ─end─▶ Ended ─complete(note)─▶ Completed
//!                           ▲                          │
//!                           └──patient_left_waiting────┘
//! Scheduled | Open | Waiting  ─cancel─────────────────▶ Cancelled
//! Scheduled | Open            ─mark_no_show───────────▶ NoShow
//! Open | Waiting | InCall     ─mark_technical_failure─▶ TechnicalFailure
//! ```
//!
//! [`ConsultationState::apply`] is the only way to move; an event the state does not allow is an
//! [`IllegalTransition`] error, never a panic. States are stored as text ([`ConsultationState::code`]
//! / [`std::str::FromStr`]).
//!
//! Source for the journal note: the service description (seed `000_d8df4fec02b1ef05.txt`),
//! "Indhold i ydelser".

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Where a consultation is in its life. Serialised as a stable snake_case string.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConsultationState {
    /// Booked; the join link does not work yet.
    Scheduled,
    /// The link window is open; the patient can join.
    Open,
    /// The patient is in the waiting room.
    Waiting,
    /// The therapist admitted the patient; the call is running.
    InCall,
    /// The call has ended; the journal note is not written yet.
    Ended,
    /// Ended and the journal note is written. Final.
    Completed,
    /// Cancelled before the call. Final.
    Cancelled,
    /// The patient never came. Final.
    NoShow,
    /// The call could not be held for technical reasons. Final.
    TechnicalFailure,
}

/// Text that is not a state code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown consultation state {0:?}")]
pub struct UnknownState(pub String);

impl ConsultationState {
    /// Every state.
    pub const ALL: [ConsultationState; 9] = [
        ConsultationState::Scheduled,
        ConsultationState::Open,
        ConsultationState::Waiting,
        ConsultationState::InCall,
        ConsultationState::Ended,
        ConsultationState::Completed,
        ConsultationState::Cancelled,
        ConsultationState::NoShow,
        ConsultationState::TechnicalFailure,
    ];

    /// The stable code stored in the database (same as the serde form), e.g. `in_call`.
    pub const fn code(self) -> &'static str {
        match self {
            ConsultationState::Scheduled => "scheduled",
            ConsultationState::Open => "open",
            ConsultationState::Waiting => "waiting",
            ConsultationState::InCall => "in_call",
            ConsultationState::Ended => "ended",
            ConsultationState::Completed => "completed",
            ConsultationState::Cancelled => "cancelled",
            ConsultationState::NoShow => "no_show",
            ConsultationState::TechnicalFailure => "technical_failure",
        }
    }

    /// Whether the consultation is over: its call has ended or it was closed. Nobody may join
    /// or be admitted any more; what is left is writing the journal note (`ended`).
    pub const fn is_over(self) -> bool {
        matches!(self, ConsultationState::Ended) || self.is_final()
    }

    /// Whether no event can move the consultation any more.
    pub const fn is_final(self) -> bool {
        matches!(
            self,
            ConsultationState::Completed
                | ConsultationState::Cancelled
                | ConsultationState::NoShow
                | ConsultationState::TechnicalFailure
        )
    }

    /// The state after `event`, or [`IllegalTransition`] if this state does not allow it.
    ///
    /// | from | event | to |
    /// |---|---|---|
    /// | scheduled | open_window | open |
    /// | open | patient_arrived | waiting |
    /// | waiting | patient_left_waiting | open |
    /// | waiting | admit | in_call |
    /// | in_call | end | ended |
    /// | ended | complete(note) | completed |
    /// | scheduled, open, waiting | cancel | cancelled |
    /// | scheduled, open | mark_no_show | no_show |
    /// | open, waiting, in_call | mark_technical_failure | technical_failure |
    ///
    /// Everything else is illegal, including any event in a final state. The journal note of
    /// `complete` is for the caller to store; this only checks that the move is allowed.
    pub fn apply(self, event: &ConsultationEvent) -> Result<ConsultationState, IllegalTransition> {
        use ConsultationEvent as E;
        use ConsultationState as S;
        let next = match (self, event) {
            (S::Scheduled, E::OpenWindow) => S::Open,
            (S::Open, E::PatientArrived) => S::Waiting,
            (S::Waiting, E::PatientLeftWaiting) => S::Open,
            (S::Waiting, E::Admit) => S::InCall,
            (S::InCall, E::End) => S::Ended,
            (S::Ended, E::Complete(_)) => S::Completed,
            (S::Scheduled | S::Open | S::Waiting, E::Cancel) => S::Cancelled,
            (S::Scheduled | S::Open, E::MarkNoShow) => S::NoShow,
            (S::Open | S::Waiting | S::InCall, E::MarkTechnicalFailure) => S::TechnicalFailure,
            _ => {
                return Err(IllegalTransition {
                    from: self,
                    event: event.code(),
                })
            }
        };
        Ok(next)
    }
}

/// Displays the code.
impl fmt::Display for ConsultationState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// Parses the code, e.g. `"no_show"`.
impl FromStr for ConsultationState {
    type Err = UnknownState;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ConsultationState::ALL
            .into_iter()
            .find(|state| state.code() == s)
            .ok_or_else(|| UnknownState(s.to_owned()))
    }
}

/// Something that happens to a consultation. Serialised with a snake_case `event` tag;
/// `complete` carries the note's fields beside it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum ConsultationEvent {
    /// The join window opens.
    OpenWindow,
    /// The patient entered the waiting room.
    PatientArrived,
    /// The patient left the waiting room before being admitted.
    PatientLeftWaiting,
    /// The therapist let the patient in; the call starts.
    Admit,
    /// The call ended.
    End,
    /// The therapist wrote the journal note.
    Complete(JournalNote),
    /// The consultation is called off.
    Cancel,
    /// The patient did not come.
    MarkNoShow,
    /// The call could not be held for technical reasons.
    MarkTechnicalFailure,
}

impl ConsultationEvent {
    /// The stable code (same as the serde `event` tag), e.g. `patient_arrived`.
    pub const fn code(&self) -> &'static str {
        match self {
            ConsultationEvent::OpenWindow => "open_window",
            ConsultationEvent::PatientArrived => "patient_arrived",
            ConsultationEvent::PatientLeftWaiting => "patient_left_waiting",
            ConsultationEvent::Admit => "admit",
            ConsultationEvent::End => "end",
            ConsultationEvent::Complete(_) => "complete",
            ConsultationEvent::Cancel => "cancel",
            ConsultationEvent::MarkNoShow => "mark_no_show",
            ConsultationEvent::MarkTechnicalFailure => "mark_technical_failure",
        }
    }
}

/// An event the current state does not allow; nothing changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("event {event} is not allowed when the consultation is {from}")]
pub struct IllegalTransition {
    /// The state the consultation is in (and stays in).
    pub from: ConsultationState,
    /// The code of the refused event.
    pub event: &'static str,
}

/// The journal entry that completes a consultation, structured after the content of the service
/// ("Indhold i ydelser"). Each text section is optional, but at least one must say something.
///
/// Build it with [`JournalNote::parse`]; serde reads the same fields and validates the same way.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "JournalNoteDraft", into = "JournalNoteDraft")]
pub struct JournalNote {
    status_since_last: Option<String>,
    evaluation: Option<String>,
    complications: Option<String>,
    exercises_and_instruction: Option<String>,
    plan_changes: Option<String>,
    goal_reached_discharge: bool,
    free_text: Option<String>,
}

/// The therapist's input for a journal note, as typed. Missing or blank sections are allowed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct JournalNoteDraft {
    /// Status since last time, e.g. how the plan was carried out (status siden sidst).
    pub status_since_last: Option<String>,
    /// Monitoring and evaluation (monitorering/evaluering).
    pub evaluation: Option<String>,
    /// Complications or side effects and how they were handled (komplikationer/bivirkninger).
    pub complications: Option<String>,
    /// Training therapy, guidance, correction and instruction in exercises (træningsterapi,
    /// vejledning, korrektion og instruktion i øvelser).
    pub exercises_and_instruction: Option<String>,
    /// Changes to goals and treatment plan, including deviations (tilpasning af mål og
    /// behandlingsplan).
    pub plan_changes: Option<String>,
    /// The treatment goal is reached and the patient can be discharged (behandlingsmålet er
    /// opnået, patienten kan afsluttes).
    pub goal_reached_discharge: bool,
    /// Anything else.
    pub free_text: Option<String>,
}

/// A journal note that cannot be accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum JournalNoteError {
    /// Every text section is missing or blank.
    #[error("the journal note is empty: write at least one section")]
    Empty,
}

/// Trims a section; blank becomes `None`.
fn section(text: Option<String>) -> Option<String> {
    text.map(|t| t.trim().to_owned()).filter(|t| !t.is_empty())
}

impl JournalNote {
    /// Accepts a draft, trimming each section and treating blank sections as not written.
    /// Rejects a note whose every text section is blank ([`JournalNoteError::Empty`]), even if
    /// `goal_reached_discharge` is set: a discharge still needs a written reason.
    pub fn parse(draft: JournalNoteDraft) -> Result<JournalNote, JournalNoteError> {
        let note = JournalNote {
            status_since_last: section(draft.status_since_last),
            evaluation: section(draft.evaluation),
            complications: section(draft.complications),
            exercises_and_instruction: section(draft.exercises_and_instruction),
            plan_changes: section(draft.plan_changes),
            goal_reached_discharge: draft.goal_reached_discharge,
            free_text: section(draft.free_text),
        };
        let sections = [
            &note.status_since_last,
            &note.evaluation,
            &note.complications,
            &note.exercises_and_instruction,
            &note.plan_changes,
            &note.free_text,
        ];
        if sections.iter().all(|s| s.is_none()) {
            return Err(JournalNoteError::Empty);
        }
        Ok(note)
    }

    /// Status since last time.
    pub fn status_since_last(&self) -> Option<&str> {
        self.status_since_last.as_deref()
    }

    /// Monitoring and evaluation.
    pub fn evaluation(&self) -> Option<&str> {
        self.evaluation.as_deref()
    }

    /// Complications or side effects.
    pub fn complications(&self) -> Option<&str> {
        self.complications.as_deref()
    }

    /// Training, guidance and exercise instruction.
    pub fn exercises_and_instruction(&self) -> Option<&str> {
        self.exercises_and_instruction.as_deref()
    }

    /// Changes to goals and treatment plan.
    pub fn plan_changes(&self) -> Option<&str> {
        self.plan_changes.as_deref()
    }

    /// Whether the goal is reached and the patient can be discharged.
    pub fn goal_reached_discharge(&self) -> bool {
        self.goal_reached_discharge
    }

    /// Free text.
    pub fn free_text(&self) -> Option<&str> {
        self.free_text.as_deref()
    }
}

impl TryFrom<JournalNoteDraft> for JournalNote {
    type Error = JournalNoteError;

    fn try_from(draft: JournalNoteDraft) -> Result<Self, Self::Error> {
        JournalNote::parse(draft)
    }
}

impl From<JournalNote> for JournalNoteDraft {
    fn from(note: JournalNote) -> Self {
        JournalNoteDraft {
            status_since_last: note.status_since_last,
            evaluation: note.evaluation,
            complications: note.complications,
            exercises_and_instruction: note.exercises_and_instruction,
            plan_changes: note.plan_changes,
            goal_reached_discharge: note.goal_reached_discharge,
            free_text: note.free_text,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ConsultationEvent as E;
    use ConsultationState as S;

    fn note() -> JournalNote {
        JournalNote::parse(JournalNoteDraft {
            status_since_last: Some("Træner 3×/uge som aftalt.".to_owned()),
            exercises_and_instruction: Some("Korrigeret squat.".to_owned()),
            ..JournalNoteDraft::default()
        })
        .unwrap()
    }

    fn all_events() -> Vec<ConsultationEvent> {
        vec![
            E::OpenWindow,
            E::PatientArrived,
            E::PatientLeftWaiting,
            E::Admit,
            E::End,
            E::Complete(note()),
            E::Cancel,
            E::MarkNoShow,
            E::MarkTechnicalFailure,
        ]
    }

    #[test]
    fn happy_path() {
        let mut state = S::Scheduled;
        for event in [
            E::OpenWindow,
            E::PatientArrived,
            E::Admit,
            E::End,
            E::Complete(note()),
        ] {
            state = state.apply(&event).unwrap();
        }
        assert_eq!(state, S::Completed);
    }

    #[test]
    fn patient_can_leave_and_come_back_to_the_waiting_room() {
        let state = S::Open
            .apply(&E::PatientArrived)
            .and_then(|s| s.apply(&E::PatientLeftWaiting))
            .and_then(|s| s.apply(&E::PatientArrived))
            .and_then(|s| s.apply(&E::Admit));
        assert_eq!(state, Ok(S::InCall));
    }

    #[test]
    fn exactly_the_documented_transitions_are_legal() {
        let legal: &[(S, &str, S)] = &[
            (S::Scheduled, "open_window", S::Open),
            (S::Open, "patient_arrived", S::Waiting),
            (S::Waiting, "patient_left_waiting", S::Open),
            (S::Waiting, "admit", S::InCall),
            (S::InCall, "end", S::Ended),
            (S::Ended, "complete", S::Completed),
            (S::Scheduled, "cancel", S::Cancelled),
            (S::Open, "cancel", S::Cancelled),
            (S::Waiting, "cancel", S::Cancelled),
            (S::Scheduled, "mark_no_show", S::NoShow),
            (S::Open, "mark_no_show", S::NoShow),
            (S::Open, "mark_technical_failure", S::TechnicalFailure),
            (S::Waiting, "mark_technical_failure", S::TechnicalFailure),
            (S::InCall, "mark_technical_failure", S::TechnicalFailure),
        ];
        for state in S::ALL {
            for event in all_events() {
                let expected = legal
                    .iter()
                    .find(|(from, code, _)| *from == state && *code == event.code())
                    .map(|(_, _, to)| *to);
                match expected {
                    Some(to) => {
                        assert_eq!(state.apply(&event), Ok(to), "{state} + {}", event.code())
                    }
                    None => assert_eq!(
                        state.apply(&event),
                        Err(IllegalTransition {
                            from: state,
                            event: event.code()
                        }),
                        "{state} + {}",
                        event.code()
                    ),
                }
            }
        }
    }

    #[test]
    fn final_states_accept_nothing() {
        for state in S::ALL.into_iter().filter(|s| s.is_final()) {
            for event in all_events() {
                assert!(state.apply(&event).is_err());
            }
        }
        assert!(!S::Ended.is_final());
    }

    #[test]
    fn illegal_transition_message() {
        let err = S::Scheduled.apply(&E::Admit).unwrap_err();
        assert_eq!(
            err.to_string(),
            "event admit is not allowed when the consultation is scheduled"
        );
    }

    #[test]
    fn states_are_stable_text() {
        let codes: Vec<&str> = S::ALL.iter().map(|s| s.code()).collect();
        assert_eq!(
            codes,
            [
                "scheduled",
                "open",
                "waiting",
                "in_call",
                "ended",
                "completed",
                "cancelled",
                "no_show",
                "technical_failure"
            ]
        );
        for state in S::ALL {
            assert_eq!(state.code().parse::<S>(), Ok(state));
            assert_eq!(
                serde_json::to_string(&state).unwrap(),
                format!("\"{state}\"")
            );
        }
        assert_eq!(
            "InCall".parse::<S>(),
            Err(UnknownState("InCall".to_owned()))
        );
    }

    #[test]
    fn empty_journal_note_is_rejected() {
        assert_eq!(
            JournalNote::parse(JournalNoteDraft::default()),
            Err(JournalNoteError::Empty)
        );
        let blank = JournalNoteDraft {
            status_since_last: Some("   ".to_owned()),
            evaluation: Some(String::new()),
            free_text: Some("\n\t".to_owned()),
            goal_reached_discharge: true,
            ..JournalNoteDraft::default()
        };
        assert_eq!(JournalNote::parse(blank), Err(JournalNoteError::Empty));
    }

    #[test]
    fn journal_note_trims_and_keeps_sections() {
        let note = JournalNote::parse(JournalNoteDraft {
            complications: Some("  Let ømhed efter øvelser. ".to_owned()),
            plan_changes: Some(" ".to_owned()),
            goal_reached_discharge: true,
            ..JournalNoteDraft::default()
        })
        .unwrap();
        assert_eq!(note.complications(), Some("Let ømhed efter øvelser."));
        assert_eq!(note.plan_changes(), None);
        assert!(note.goal_reached_discharge());
        assert_eq!(note.free_text(), None);
    }

    #[test]
    fn event_serde_carries_the_note_and_validates_it() {
        let json = serde_json::to_value(E::Complete(note())).unwrap();
        assert_eq!(json["event"], "complete");
        assert_eq!(json["status_since_last"], "Træner 3×/uge som aftalt.");
        assert_eq!(
            serde_json::from_value::<E>(json).unwrap(),
            E::Complete(note())
        );
        assert_eq!(
            serde_json::to_string(&E::Admit).unwrap(),
            r#"{"event":"admit"}"#
        );
        let empty = serde_json::json!({"event": "complete", "evaluation": "  "});
        let err = serde_json::from_value::<E>(empty).unwrap_err();
        assert!(err.to_string().contains("journal note is empty"), "{err}");
    }
}
