//! The privacy notice patients see on the join page (GDPR art. 13): who
//! the controller is (the clinic), why the data is processed, what is and
//! is not stored, for how long, the patient's rights and whom to contact.
//!
//! A clinic may write its own text (Danish and English); otherwise the
//! default below is filled in from the clinic's name, contact and actual
//! retention periods, so the notice never promises what the settings do
//! not hold.

use konsult_store::clinics::{Clinic, PrivacyText, Retention};
use serde::Serialize;
use utoipa::ToSchema;

/// The notice, in both languages.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct PrivacyNotice {
    /// `clinic` when the clinic's own text is shown, else `default`.
    pub source: &'static str,
    /// The controller's name, when the link is known.
    pub controller: Option<String>,
    /// The clinic's contact for questions about personal data.
    pub contact: Option<String>,
    /// The Danish notice.
    pub da: NoticeText,
    /// The English notice.
    pub en: NoticeText,
}

/// The notice in one language.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct NoticeText {
    /// Heading.
    pub title: String,
    /// A one-sentence summary for the page itself.
    pub summary: String,
    /// The sections, in order.
    pub sections: Vec<NoticeSection>,
}

/// One section of the notice.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct NoticeSection {
    /// Its heading.
    pub heading: String,
    /// Its paragraphs.
    pub paragraphs: Vec<String>,
}

fn section(heading: &str, paragraphs: &[String]) -> NoticeSection {
    NoticeSection {
        heading: heading.to_owned(),
        paragraphs: paragraphs.to_vec(),
    }
}

/// Paragraphs of a clinic's own text: blocks separated by blank lines.
fn paragraphs(text: &str) -> Vec<String> {
    text.replace("\r\n", "\n")
        .split("\n\n")
        .map(|p| p.split_whitespace().collect::<Vec<_>>().join(" "))
        .filter(|p| !p.is_empty())
        .collect()
}

fn default_da(
    controller: Option<&str>,
    retention: &Retention,
    contact: Option<&str>,
) -> NoticeText {
    let who = match controller {
        Some(name) => format!(
            "{name} er dataansvarlig for dine oplysninger. Konsult er klinikkens system til videokonsultationer og behandler kun oplysningerne på klinikkens vegne."
        ),
        None => "Den klinik, der har sendt dig linket, er dataansvarlig for dine oplysninger. Konsult er klinikkens system til videokonsultationer og behandler kun oplysningerne på klinikkens vegne.".to_owned(),
    };
    let Retention {
        journal_years,
        billing_years,
        event_days,
    } = *retention;
    NoticeText {
        title: "Sådan behandler vi dine oplysninger".into(),
        summary: "Samtalen bliver ikke optaget. Klinikken er ansvarlig for dine oplysninger.".into(),
        sections: vec![
            section("Hvem er ansvarlig", &[who]),
            section(
                "Hvorfor",
                &["Oplysningerne bruges til at holde videokonsultationen med din fysioterapeut, til journalføring og til afregning med regionen. Det er en del af din behandling, og loven kræver journal og afregning.".into()],
            ),
            section(
                "Hvad bliver gemt",
                &["Dit navn og dine kontaktoplysninger, hvornår samtalen var, om der var lyd og billede begge veje, fysioterapeutens journalnotat og afregningen af samtalen. Det bliver også gemt, hvem i klinikken der har set eller ændret dine oplysninger.".into()],
            ),
            section(
                "Hvad bliver ikke gemt",
                &["Lyd og video bliver ikke optaget eller gemt. Beskeder i chatten bliver ikke gemt. Din IP-adresse og oplysninger om din forbindelse bliver ikke gemt. Der er ingen reklame- eller statistikcookies, og siden henter intet fra andre firmaer.".into()],
            ),
            section(
                "Hvor længe",
                &[format!(
                    "Journalnotatet gemmes i {journal_years} år efter det seneste notat. Afregningen gemmes i {billing_years} år efter udgangen af regnskabsåret. Oplysningerne om selve opkaldet gemmes i {event_days} dage."
                )],
            ),
            section(
                "Dine rettigheder",
                &["Du kan få en kopi af dine oplysninger, få forkerte oplysninger rettet og få at vide, hvem der har set dem. Oplysninger kan slettes, når de ikke længere skal gemmes efter loven. Du kan klage til Datatilsynet.".into()],
            ),
            section(
                "Kontakt",
                &[match contact {
                    Some(c) => format!("Skriv eller ring til klinikken, hvis du har spørgsmål om dine oplysninger: {c}"),
                    None => "Kontakt klinikken, hvis du har spørgsmål om dine oplysninger.".to_owned(),
                }],
            ),
        ],
    }
}

fn default_en(
    controller: Option<&str>,
    retention: &Retention,
    contact: Option<&str>,
) -> NoticeText {
    let who = match controller {
        Some(name) => format!(
            "{name} is the data controller of your information. Konsult is the clinic's video consultation system and processes the information only on the clinic's behalf."
        ),
        None => "The clinic that sent you the link is the data controller of your information. Konsult is the clinic's video consultation system and processes the information only on the clinic's behalf.".to_owned(),
    };
    let Retention {
        journal_years,
        billing_years,
        event_days,
    } = *retention;
    NoticeText {
        title: "How we handle your information".into(),
        summary: "The consultation is not recorded. The clinic is responsible for your information.".into(),
        sections: vec![
            section("Who is responsible", &[who]),
            section(
                "Why",
                &["The information is used to hold the video consultation with your physiotherapist, for the clinical record and for billing the region. It is part of your treatment, and the law requires the record and the billing.".into()],
            ),
            section(
                "What is kept",
                &["Your name and contact details, when the consultation took place, whether sound and picture worked both ways, the physiotherapist's journal note and the billing of the consultation. Who at the clinic has viewed or changed your information is kept too.".into()],
            ),
            section(
                "What is not kept",
                &["Sound and video are not recorded or kept. Chat messages are not kept. Your IP address and details of your connection are not kept. There are no advertising or statistics cookies, and the page loads nothing from other companies.".into()],
            ),
            section(
                "How long",
                &[format!(
                    "The journal note is kept for {journal_years} years after the latest note. The billing is kept for {billing_years} years after the end of the financial year. The details of the call itself are kept for {event_days} days."
                )],
            ),
            section(
                "Your rights",
                &["You can get a copy of your information, have wrong information corrected and learn who has viewed it. Information can be erased once the law no longer requires it to be kept. You can complain to the Danish Data Protection Agency (Datatilsynet).".into()],
            ),
            section(
                "Contact",
                &[match contact {
                    Some(c) => format!("Write to or call the clinic if you have questions about your information: {c}"),
                    None => "Contact the clinic if you have questions about your information.".to_owned(),
                }],
            ),
        ],
    }
}

/// A clinic's own text in one language, with the contact section after it.
fn own_text(
    title: &str,
    summary: &str,
    text: &str,
    contact_heading: &str,
    contact: &str,
) -> NoticeText {
    NoticeText {
        title: title.to_owned(),
        summary: summary.to_owned(),
        sections: vec![
            section("", &paragraphs(text)),
            section(contact_heading, &[contact.to_owned()]),
        ],
    }
}

/// The notice for a join link of `clinic` (`None`: the link is unknown,
/// the default text without a controller's name).
pub fn notice(clinic: Option<&Clinic>) -> PrivacyNotice {
    let retention = clinic.map(|c| c.retention).unwrap_or_default();
    let controller = clinic.map(|c| c.name.as_str());
    let privacy: Option<&PrivacyText> = clinic.and_then(|c| c.privacy.as_ref());
    let contact = privacy.map(|p| p.contact.as_str());
    let da_default = default_da(controller, &retention, contact);
    let en_default = default_en(controller, &retention, contact);
    let own = |text: &Option<String>, fallback: NoticeText, heading: &str| match (text, contact) {
        (Some(t), Some(c)) if !t.trim().is_empty() => {
            own_text(&fallback.title, &fallback.summary, t, heading, c)
        }
        _ => fallback,
    };
    let (da, en) = match privacy {
        Some(p) => (
            own(&p.text_da, da_default.clone(), "Kontakt"),
            own(&p.text_en, en_default.clone(), "Contact"),
        ),
        None => (da_default.clone(), en_default.clone()),
    };
    let source = if da != da_default || en != en_default {
        "clinic"
    } else {
        "default"
    };
    PrivacyNotice {
        source,
        controller: controller.map(str::to_owned),
        contact: contact.map(str::to_owned),
        da,
        en,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use konsult_domain::{ClinicId, Speciale};

    fn clinic(privacy: Option<PrivacyText>) -> Clinic {
        Clinic {
            id: ClinicId::from_uuid(uuid::Uuid::nil()),
            name: "Fysioklinikken Aarhus".into(),
            ydernummer: "123456".into(),
            specialer: vec![Speciale::Almen],
            fee_table_json: None,
            relay_only_default: true,
            evidence_policy: konsult_domain::EvidencePolicy::ClientReported,
            retention: Retention {
                journal_years: 7,
                billing_years: 5,
                event_days: 90,
            },
            privacy,
            phone: None,
        }
    }

    fn text(n: &NoticeText) -> String {
        n.sections
            .iter()
            .flat_map(|s| std::iter::once(s.heading.clone()).chain(s.paragraphs.clone()))
            .collect::<Vec<_>>()
            .join("\n")
    }

    #[test]
    fn the_default_names_the_clinic_and_its_real_retention() {
        let n = notice(Some(&clinic(None)));
        assert_eq!(n.source, "default");
        let da = text(&n.da);
        assert!(
            da.contains("Fysioklinikken Aarhus er dataansvarlig"),
            "{da}"
        );
        assert!(da.contains("Lyd og video bliver ikke optaget"), "{da}");
        assert!(da.contains("7 år efter det seneste notat"), "{da}");
        assert!(da.contains("90 dage"), "{da}");
        let en = text(&n.en);
        assert!(en.contains("is the data controller"), "{en}");
        assert!(en.contains("Sound and video are not recorded"), "{en}");
        assert!(en.contains("7 years after the latest note"), "{en}");
        assert_eq!(n.da.sections.len(), n.en.sections.len());
    }

    #[test]
    fn an_unknown_link_gets_the_default_without_a_controller() {
        let n = notice(None);
        assert_eq!(n.controller, None);
        assert!(text(&n.da).contains("Den klinik, der har sendt dig linket"));
        assert!(text(&n.en).contains("5 years after the latest note"));
    }

    #[test]
    fn the_clinics_own_text_replaces_the_default_in_its_language() {
        let n = notice(Some(&clinic(Some(PrivacyText {
            contact: "info@fysio.example, 86 12 34 56".into(),
            text_da: Some("Vi passer på dine data.\n\nLæs mere i klinikken.".into()),
            text_en: None,
        }))));
        assert_eq!(n.source, "clinic");
        assert_eq!(
            n.da.sections[0].paragraphs,
            ["Vi passer på dine data.", "Læs mere i klinikken."]
        );
        assert!(text(&n.da).contains("info@fysio.example"));
        // English falls back to the default, with the contact filled in.
        assert!(text(&n.en).contains("is the data controller"));
        assert!(text(&n.en).contains("info@fysio.example"));
    }
}
