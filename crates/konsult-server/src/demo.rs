//! `konsult serve --demo`: on an empty installation, a demo clinic with an
//! admin, a therapist and an eligible patient with a consultation that
//! starts in ten minutes, so that a newcomer reaches a working call at once.

use chrono::Duration;
use konsult_domain::{
    danish_day, AssessmentCriteria, Course, CourseId, PatientId, Speciale, StructuredCourse,
};
use konsult_store::audit::Actor;
use konsult_store::clinical::CourseRecord;
use konsult_store::clinics::NewClinic;
use konsult_store::consultations::{NewConsultation, ScheduleOutcome};
use konsult_store::patients::PatientData;
use konsult_store::therapists::{NewTherapist, Role};

use crate::auth::hash_password;
use crate::state::AppState;

/// Seeds the demo data when no clinic exists; returns what to print.
pub async fn seed(state: &AppState) -> anyhow::Result<Option<String>> {
    if !state.store.clinic_ids().await?.is_empty() {
        return Ok(None);
    }
    let now = state.clock.now();
    let password = konsult_store::crypto::new_token()[..16].to_owned();
    let hash = hash_password(&password)?;
    let (clinic, admin) = state
        .store
        .create_clinic(
            NewClinic {
                name: "Demo Fysioterapi".into(),
                ydernummer: "999999".into(),
                specialer: vec![Speciale::Almen, Speciale::Vederlagsfri],
            },
            NewTherapist {
                name: "Demo Admin".into(),
                email: "admin@demo.konsult".into(),
                password_hash: hash.clone(),
                role: Role::Admin,
            },
            now,
        )
        .await?;
    let therapist = state
        .store
        .create_therapist(
            clinic,
            admin,
            NewTherapist {
                name: "Tina Terapeut".into(),
                email: "terapeut@demo.konsult".into(),
                password_hash: hash,
                role: Role::Therapist,
            },
            now,
        )
        .await?;
    let actor = Actor::Therapist(therapist);
    let patient = state
        .store
        .create_patient(
            clinic,
            actor,
            PatientData {
                name: "Karen Demo".into(),
                cpr: None,
                phone: Some("+45 12 34 56 78".into()),
                email: None,
            },
            now,
        )
        .await?;
    state
        .store
        .record_visit(clinic, therapist, patient.id, now - Duration::days(7), now)
        .await?;
    let today = danish_day(now);
    let course = Course::open(
        CourseId::from_uuid(uuid::Uuid::new_v4()),
        PatientId::from_uuid(patient.id.as_uuid()),
        Speciale::Almen,
        None,
        Some(StructuredCourse::LaenderygSmerter).filter(|c| c.available_from() <= today),
        today - Duration::days(14),
        today,
    )?;
    let record = CourseRecord::from(&course);
    state.store.open_course(clinic, actor, &record, now).await?;
    state
        .store
        .record_assessment(
            clinic,
            therapist,
            record.id,
            AssessmentCriteria::ALL_MET,
            now,
        )
        .await?;
    let window = state.settings.link_window();
    let outcome = state
        .store
        .schedule(
            clinic,
            therapist,
            NewConsultation {
                patient: patient.id,
                course: record.id,
                therapist,
                start: now + Duration::minutes(10),
                length_minutes: 30,
                relay_only: true,
                allow_overlap: false,
            },
            window,
            now,
        )
        .await?;
    let ScheduleOutcome::Scheduled { link, .. } = outcome else {
        anyhow::bail!("the demo patient was not eligible");
    };
    let base = &state.public_url;
    let join_url = format!("{base}/join/{}", link.token);
    let _ = state.demo_link.set((clinic, join_url.clone()));
    Ok(Some(format!(
        "\nDemo clinic ready.\n\n  Therapist dashboard: {base}/app\n    log in as terapeut@demo.konsult (admin: admin@demo.konsult), password: {password}\n\n  Patient join link (open in another browser or a private window):\n    {join_url}\n"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Application, Clock, Settings};

    #[tokio::test]
    async fn demo_seeds_an_eligible_consultation_once() {
        let dir = tempfile::tempdir().unwrap();
        let mut settings = Settings {
            listen: "127.0.0.1:0".parse().unwrap(),
            data_dir: dir.path().to_path_buf(),
            ..Settings::default()
        };
        settings.turn.enabled = false;
        let app = Application::build_with_clock(settings, Clock::System)
            .await
            .unwrap();
        let text = seed(app.state()).await.unwrap().expect("seeded");
        assert!(text.contains("terapeut@demo.konsult"));
        let token = text.split("/join/").nth(1).unwrap().trim();
        // The dashboard shows the same link to the demo clinic.
        let (_, shown) = app.state().demo_link.get().expect("kept for the dashboard");
        assert!(shown.ends_with(&format!("/join/{token}")), "{shown}");
        let status = app
            .state()
            .store
            .link_status(token, app.state().clock.now())
            .await
            .unwrap();
        assert!(
            matches!(
                status,
                konsult_store::consultations::LinkStatus::Valid { .. }
            ),
            "{status:?}"
        );
        assert!(
            seed(app.state()).await.unwrap().is_none(),
            "only on an empty installation"
        );
    }
}
