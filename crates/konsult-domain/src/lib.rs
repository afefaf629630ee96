//! Konsult's domain rules for the Danish individual and group video consultation
//! (videokonsultation) in physiotherapy practice: who may have one, what it is billed as, who
//! pays what, and how a consultation moves from scheduled to completed.
//!
//! **Architecture invariant:** this crate does no I/O, reads no clock, draws no random numbers
//! and has no async code. Instants, days and ids come in as arguments, so every rule is a plain
//! function that tests can drive with any time. Storage and HTTP live in other crates and call
//! in here.
//!
//! Map (the rules and their sources are in `docs/domain.md`):
//!
//! * [`ids`]: typed ids over UUIDs.
//! * [`service`]: [`Speciale`] (51/62), [`ServiceKind`], [`ServiceNumber`].
//! * [`money`]: [`Money`] in øre and the payer split [`shares`].
//! * [`calendar`]: the Danish calendar day of an instant, [`danish_day`], and its UTC bounds.
//! * [`fees`]: the fee table with validity periods, [`FeeTable`].
//! * [`regulation`]: the fee in force on a day, the table's level regulated by every step since
//!   ([`FeeSchedule`]), explained and marked unconfirmed when a step is missing.
//! * [`course`]: diagnosis groups, structured courses and [`Course`].
//! * [`mod@eligibility`]: the gate before a video consultation, [`fn@eligibility`].
//! * [`billing`]: whether an ended consultation is billable, [`decide_billing`].
//! * [`consultation`]: the lifecycle state machine and the [`JournalNote`].
//! * [`lifecycle`]: what a consultation's call does to it ([`CallEvent`] →
//!   [`lifecycle::CallTransition`] and [`Effects`]), and the kinds of two-way [`Evidence`].
//! * [`evidence`]: when media counts as having flowed both ways.
//!
//! The most used items are re-exported at the crate root.
#![warn(missing_docs)]

pub mod billing;
pub mod calendar;
pub mod consultation;
pub mod course;
pub mod eligibility;
pub mod evidence;
pub mod fees;
pub mod ids;
pub mod lifecycle;
pub mod money;
pub mod payment;
pub mod regulation;
pub mod service;

pub use billing::{
    decide_billing, reprice, reversal, visit_conflicts, BillingDecision, BillingLine,
    ConsultationFacts, ConsultationOutcome, NotBillableReason,
};
pub use calendar::{danish_day, day_bounds_utc};
pub use consultation::{
    ConsultationEvent, ConsultationState, IllegalTransition, JournalNote, JournalNoteDraft,
    JournalNoteError,
};
pub use course::{Course, CourseError, DiagnosisGroup, StructuredCourse};
pub use eligibility::{
    eligibility, Assessment, AssessmentCriteria, Eligibility, Failure, InClinicVisit,
};
pub use evidence::EvidenceRules;
pub use fees::{FeeRow, FeeTable, FeeTableError, FeeTableProblem, NoValidFee, MAX_FEE};
pub use ids::{
    AssessmentId, BillingLineId, ClinicId, ConsultationId, CourseId, PatientId, TherapistId,
    VisitId,
};
pub use lifecycle::{CallEvent, CallFacts, Effects, EndReason, Evidence, EvidencePolicy};
pub use money::{shares, Money, PayerShares};
pub use payment::PatientPayment;
pub use regulation::{
    FeeReference, FeeSchedule, PricedFee, RegulationStep, Regulations, StepChange, StepProblem,
};
pub use service::{ServiceKind, ServiceNumber, Speciale};
