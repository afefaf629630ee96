//! Records of processing activities (GDPR art. 30) for one clinic,
//! generated from what the installation actually does: the clinic's
//! retention periods and relay-only default, the relays in use, the
//! operator and its sub-processors from the settings, and the security
//! measures in force. What the settings leave open is listed under `gaps`,
//! so an incomplete record says so instead of looking complete.

use chrono::{DateTime, Utc};
use konsult_protocol::CandidatePolicy;
use konsult_store::clinics::Clinic;
use serde::Serialize;
use utoipa::ToSchema;

use crate::config::Settings;
use crate::relay::Turn;

/// The `format` of the document.
pub const FORMAT: &str = "konsult.records-of-processing";

/// A text in Danish and English.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Texts {
    /// Danish.
    pub da: String,
    /// English.
    pub en: String,
}

fn texts(da: &str, en: &str) -> Texts {
    Texts {
        da: da.to_owned(),
        en: en.to_owned(),
    }
}

/// The whole record for one clinic.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RecordsOfProcessing {
    /// Always `konsult.records-of-processing`.
    pub format: &'static str,
    /// Version of this shape (1).
    pub version: u32,
    /// When it was generated.
    pub generated_at: DateTime<Utc>,
    /// The controller: the clinic.
    pub controller: Party,
    /// The processor: the operator of this installation.
    pub processor: Party,
    /// The processing activities, each with purpose, categories and retention.
    pub activities: Vec<Activity>,
    /// The clinic's retention periods in force.
    pub retention: RetentionInForce,
    /// Whether new consultations hide both sides' addresses (relay-only ICE).
    pub relay_only_default: bool,
    /// The TURN/STUN relays consultations use.
    pub relays: Vec<RelayInUse>,
    /// The operator's sub-processors.
    pub sub_processors: Vec<SubProcessorEntry>,
    /// Sub-processors outside the EU/EEA, with their transfer basis.
    pub third_country_transfers: Vec<SubProcessorEntry>,
    /// What is never stored.
    pub never_stored: Vec<Texts>,
    /// Technical and organisational security measures in force (art. 32).
    pub security_measures: Vec<Texts>,
    /// What the settings leave open; empty when the record is complete.
    pub gaps: Vec<Texts>,
}

/// A controller or processor.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Party {
    /// Name.
    pub name: Option<String>,
    /// Contact for data-protection questions.
    pub contact: Option<String>,
    /// The clinic's ydernummer (controller only).
    pub ydernummer: Option<String>,
}

/// One processing activity.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Activity {
    /// Stable key.
    pub key: &'static str,
    /// Name.
    pub name: Texts,
    /// Purpose.
    pub purpose: Texts,
    /// Legal basis as Konsult supports it; the clinic confirms its own.
    pub legal_basis: Texts,
    /// Categories of data subjects.
    pub data_subjects: Texts,
    /// Categories of personal data.
    pub data_categories: Texts,
    /// Recipients.
    pub recipients: Texts,
    /// How long, from the settings in force.
    pub retention: Texts,
}

/// Retention periods in force.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RetentionInForce {
    /// Journal notes: years after the patient's last entry.
    pub journal_years: u32,
    /// Billing lines: years after the end of their financial year.
    pub billing_years: u32,
    /// Call events, login events and expired join links: days.
    pub event_days: u32,
}

/// A relay in use.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RelayInUse {
    /// Its `turn:`/`turns:`/`stun:` URL.
    pub url: String,
    /// `embedded` (Konsult's own relay) or `external` (a coturn run by the
    /// operator or a sub-processor).
    pub operated_by: &'static str,
}

/// A sub-processor.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SubProcessorEntry {
    /// Name.
    pub name: String,
    /// What it does.
    pub purpose: String,
    /// Where it processes (ISO 3166 codes).
    pub countries: Vec<String>,
    /// Transfer basis for a country outside the EU/EEA.
    pub transfer_basis: Option<String>,
}

/// The EU and EEA member states (ISO 3166-1 alpha-2).
const EU_EEA: &[&str] = &[
    "AT", "BE", "BG", "HR", "CY", "CZ", "DK", "EE", "FI", "FR", "DE", "GR", "HU", "IE", "IT", "LV",
    "LT", "LU", "MT", "NL", "PL", "PT", "RO", "SK", "SI", "ES", "SE", "IS", "LI", "NO",
];

fn outside_eea(countries: &[String]) -> bool {
    countries
        .iter()
        .any(|c| !EU_EEA.contains(&c.trim().to_ascii_uppercase().as_str()))
}

fn activities(clinic: &Clinic) -> Vec<Activity> {
    let r = clinic.retention;
    vec![
        Activity {
            key: "video_consultation",
            name: texts("Videokonsultationer", "Video consultations"),
            purpose: texts(
                "Fysioterapeutisk behandling ved video: planlægning, mødelink, opkald mellem patient og fysioterapeut, patientsikkerhed (hvor patienten er, telefonnummer).",
                "Physiotherapy by video: scheduling, join link, the call between patient and physiotherapist, patient safety (where the patient is, a phone number).",
            ),
            legal_basis: texts(
                "GDPR art. 6, stk. 1, litra c og e / b, og art. 9, stk. 2, litra h; sundhedsloven.",
                "GDPR art. 6(1)(c) and (e) / (b), and art. 9(2)(h); the Danish Health Act (sundhedsloven).",
            ),
            data_subjects: texts("Patienter; klinikkens personale.", "Patients; the clinic's staff."),
            data_categories: texts(
                "Navn, CPR-nummer (valgfrit), telefon, e-mail; forløb (speciale, diagnosegruppe), besøg i klinikken, vurdering af egnethed til video; tidspunkter for opkaldet (venteværelse, lukket ind, lyd og billede begge veje, slut); patientens opholdssted og telefonnummer under opkaldet.",
                "Name, CPR number (optional), phone, e-mail; course of treatment (speciale, diagnosis group), in-clinic visits, assessment for video; times of the call (waiting room, admitted, two-way media, ended); where the patient is and a phone number during the call.",
            ),
            recipients: texts(
                "Ingen uden for klinikken. Mediestrømmen går direkte mellem parterne eller krypteret gennem relayet.",
                "Nobody outside the clinic. Media flows directly between the parties or encrypted through the relay.",
            ),
            retention: texts(
                &format!("Opkaldshændelser {} dage; personoplysninger indtil sletning, når ingen opbevaringsregel kræver dem.", r.event_days),
                &format!("Call events {} days; personal data until erased once no retention rule requires it.", r.event_days),
            ),
        },
        Activity {
            key: "journal",
            name: texts("Journalføring", "Clinical record"),
            purpose: texts(
                "Journalnotat for hver videokonsultation (autorisationsloven, journalføringsbekendtgørelsen).",
                "A journal note for each video consultation (the Danish Authorisation Act and journal regulations).",
            ),
            legal_basis: texts(
                "GDPR art. 6, stk. 1, litra c, og art. 9, stk. 2, litra h; autorisationsloven kap. 6.",
                "GDPR art. 6(1)(c) and art. 9(2)(h); the Authorisation Act, chapter 6.",
            ),
            data_subjects: texts("Patienter.", "Patients."),
            data_categories: texts("Helbredsoplysninger i journalnotatet.", "Health data in the journal note."),
            recipients: texts(
                "Ingen uden for klinikken; patienten selv ved indsigt.",
                "Nobody outside the clinic; the patient on access.",
            ),
            retention: texts(
                &format!("{} år efter seneste journalnotat (mindst 5 år for fysioterapeuter).", r.journal_years),
                &format!("{} years after the latest journal note (at least 5 years for physiotherapists).", r.journal_years),
            ),
        },
        Activity {
            key: "billing",
            name: texts("Afregning", "Billing"),
            purpose: texts(
                "Afregning af videokonsultationer (ydelse 0131) med regionen efter overenskomsten; regnskab.",
                "Billing video consultations (service 0131) to the region under the agreement; accounting.",
            ),
            legal_basis: texts(
                "GDPR art. 6, stk. 1, litra c; overenskomsten (2 år); bogføringsloven (5 år).",
                "GDPR art. 6(1)(c); the agreement (2 years); the Danish Bookkeeping Act (5 years).",
            ),
            data_subjects: texts("Patienter.", "Patients."),
            data_categories: texts(
                "Pseudonym, ydelse, speciale, honorar og andele, dato.",
                "Pseudonym, service, speciale, fee and shares, day.",
            ),
            recipients: texts(
                "Klinikkens praksissystem og revisor (eksport uden navn, kun pseudonym); regionen via praksissystemet.",
                "The clinic's practice system and accountant (export without names, pseudonym only); the region through the practice system.",
            ),
            retention: texts(
                &format!("{} år efter udgangen af regnskabsåret.", r.billing_years),
                &format!("{} years after the end of the financial year.", r.billing_years),
            ),
        },
        Activity {
            key: "access_and_security_log",
            name: texts("Adgangslog og login-log", "Access log and login log"),
            purpose: texts(
                "Hvem har set eller ændret patientens oplysninger (sundhedsloven § 42 a); sikkerhed og opklaring af brud (GDPR art. 32 og 33).",
                "Who has viewed or changed a patient's information (sundhedsloven § 42 a); security and breach investigation (GDPR art. 32 and 33).",
            ),
            legal_basis: texts(
                "GDPR art. 6, stk. 1, litra c, og art. 32; sundhedsloven § 42 a.",
                "GDPR art. 6(1)(c) and art. 32; sundhedsloven § 42 a.",
            ),
            data_subjects: texts("Patienter; klinikkens personale.", "Patients; the clinic's staff."),
            data_categories: texts(
                "Id'er, tidspunkt, handling; for login: konto, tidspunkt og udfald. Ingen IP-adresser.",
                "Ids, time, action; for logins: account, time and outcome. No IP addresses.",
            ),
            recipients: texts("Ingen uden for klinikken.", "Nobody outside the clinic."),
            retention: texts(
                &format!("Adgangsloggen så længe klinikkens data findes (hash-kæde); login-hændelser {} dage.", r.event_days),
                &format!("The access log as long as the clinic's data exists (hash chain); login events {} days.", r.event_days),
            ),
        },
        Activity {
            key: "staff_accounts",
            name: texts("Brugerkonti", "User accounts"),
            purpose: texts("Adgangsstyring for klinikkens personale.", "Access control for the clinic's staff."),
            legal_basis: texts("GDPR art. 6, stk. 1, litra b og f.", "GDPR art. 6(1)(b) and (f)."),
            data_subjects: texts("Klinikkens personale.", "The clinic's staff."),
            data_categories: texts(
                "Navn, e-mail, rolle, hash af adgangskode (argon2id).",
                "Name, e-mail, role, password hash (argon2id).",
            ),
            recipients: texts("Ingen.", "Nobody."),
            retention: texts("Så længe kontoen findes.", "As long as the account exists."),
        },
    ]
}

fn security_measures(settings: &Settings, clinic: &Clinic) -> Vec<Texts> {
    let tls = if settings.serves_tls() {
        texts(
            "HTTPS og WSS leveres af Konsult selv (rustls); HSTS.",
            "HTTPS and WSS served by Konsult itself (rustls); HSTS.",
        )
    } else if settings.tls.behind_proxy {
        texts(
            "TLS afsluttes i en proxy foran Konsult (operatørens ansvar).",
            "TLS is terminated by a proxy in front of Konsult (the operator's responsibility).",
        )
    } else {
        texts(
            "Kun HTTP på loopback (udvikling); ingen TLS.",
            "Plain HTTP on loopback only (development); no TLS.",
        )
    };
    let mut measures = vec![
        tls,
        texts(
            "Personoplysninger (navne, CPR, kontaktdata, journalnotater, patientsikkerhed, rettede værdier) krypteres i databasen med AES-256-GCM.",
            "Personal data (names, CPR numbers, contact data, journal notes, safety confirmations, corrected values) is encrypted in the database with AES-256-GCM.",
        ),
        texts(
            "Hver læsning og ændring af patientdata logges i en hash-kædet, manipulationssikret adgangslog.",
            "Every read and change of patient data is logged in a hash-chained, tamper-evident access log.",
        ),
        texts(
            "Login med argon2id-hash; sessionscookie HttpOnly og SameSite=Strict; CSRF-token på alle ændringer; roller.",
            "Login with argon2id hashes; session cookie HttpOnly and SameSite=Strict; CSRF token on every change; roles.",
        ),
        texts(
            "Klinikker er adskilt: hver forespørgsel er begrænset til klinikkens egne data.",
            "Clinics are isolated: every query is limited to the clinic's own data.",
        ),
        texts(
            "Ingen tredjepartsressourcer (ingen CDN, skrifttyper, statistik eller offentlige STUN-servere); Content-Security-Policy uden inline-script.",
            "No third-party resources (no CDN, fonts, analytics or public STUN servers); Content-Security-Policy without inline script.",
        ),
        texts(
            "Relayet nægter at videresende til private, loopback- og andre særlige adresser.",
            "The relay refuses to relay to private, loopback and other special addresses.",
        ),
    ];
    if clinic.relay_only_default {
        measures.push(texts(
            "Kun relay som standard: ingen af parterne ser den andens IP-adresse.",
            "Relay-only by default: neither side learns the other's IP address.",
        ));
    }
    if settings.alerts.unusual_access_patients > 0 {
        measures.push(Texts {
            da: format!(
                "Advarsel i loggen, når én konto åbner mere end {} patienters oplysninger på {} minutter.",
                settings.alerts.unusual_access_patients, settings.alerts.unusual_access_minutes
            ),
            en: format!(
                "An alert in the log when one account opens more than {} patients' records within {} minutes.",
                settings.alerts.unusual_access_patients, settings.alerts.unusual_access_minutes
            ),
        });
    }
    measures
}

/// The record for `clinic` on this installation at `now`.
pub fn records(
    clinic: &Clinic,
    settings: &Settings,
    turn: &Turn,
    now: DateTime<Utc>,
) -> RecordsOfProcessing {
    let mut relays: Vec<RelayInUse> = Vec::new();
    {
        for url in turn.urls(CandidatePolicy::All) {
            if relays.iter().all(|r| r.url != url) {
                let operated_by = if settings.turn.external_urls.contains(&url) {
                    "external"
                } else {
                    "embedded"
                };
                relays.push(RelayInUse { url, operated_by });
            }
        }
    }
    let sub_processors: Vec<SubProcessorEntry> = settings
        .operator
        .sub_processors
        .iter()
        .map(|s| SubProcessorEntry {
            name: s.name.clone(),
            purpose: s.purpose.clone(),
            countries: s.countries.clone(),
            transfer_basis: s.transfer_basis.clone(),
        })
        .collect();
    let third_country_transfers: Vec<SubProcessorEntry> = sub_processors
        .iter()
        .filter(|s| outside_eea(&s.countries))
        .cloned()
        .collect();

    let mut gaps = Vec::new();
    let blank = |s: &str| s.trim().is_empty();
    if blank(&settings.operator.name) || blank(&settings.operator.contact) {
        gaps.push(texts(
            "Operatørens navn og kontakt er ikke sat (operator.name, operator.contact).",
            "The operator's name and contact are not set (operator.name, operator.contact).",
        ));
    }
    if clinic.privacy.is_none() {
        gaps.push(texts(
            "Klinikken har ikke angivet en kontakt for spørgsmål om personoplysninger (privatlivsoplysning).",
            "The clinic has not set a contact for data-protection questions (privacy notice).",
        ));
    }
    for s in &third_country_transfers {
        if s.transfer_basis.as_deref().is_none_or(blank) {
            gaps.push(Texts {
                da: format!(
                    "{} behandler uden for EU/EØS uden angivet overførselsgrundlag.",
                    s.name
                ),
                en: format!(
                    "{} processes outside the EU/EEA without a stated transfer basis.",
                    s.name
                ),
            });
        }
    }
    if clinic.relay_only_default && !relays.iter().any(|r| r.url.starts_with("turn")) {
        gaps.push(texts(
            "Kun relay er standard, men der er intet TURN-relay konfigureret.",
            "Relay-only is the default, but no TURN relay is configured.",
        ));
    }

    let named = |s: &str| (!blank(s)).then(|| s.to_owned());
    RecordsOfProcessing {
        format: FORMAT,
        version: 1,
        generated_at: now,
        controller: Party {
            name: Some(clinic.name.clone()),
            contact: clinic.privacy.as_ref().map(|p| p.contact.clone()),
            ydernummer: Some(clinic.ydernummer.clone()),
        },
        processor: Party {
            name: named(&settings.operator.name),
            contact: named(&settings.operator.contact),
            ydernummer: None,
        },
        activities: activities(clinic),
        retention: RetentionInForce {
            journal_years: clinic.retention.journal_years,
            billing_years: clinic.retention.billing_years,
            event_days: clinic.retention.event_days,
        },
        relay_only_default: clinic.relay_only_default,
        relays,
        sub_processors,
        third_country_transfers,
        never_stored: vec![
            texts(
                "Lyd og video (ingen optagelse).",
                "Audio and video (no recording).",
            ),
            texts("Chatbeskeder.", "Chat messages."),
            texts(
                "IP-adresser, SDP og ICE-kandidater (signaleringsmetadata).",
                "IP addresses, SDP and ICE candidates (signaling metadata).",
            ),
        ],
        security_measures: security_measures(settings, clinic),
        gaps,
    }
}

#[cfg(test)]
mod tests {
    use super::outside_eea;

    #[test]
    fn countries_outside_the_eea_are_transfers() {
        assert!(!outside_eea(&["DK".into(), "de".into(), "NO".into()]));
        assert!(outside_eea(&["DK".into(), "US".into()]));
        assert!(outside_eea(&["GB".into()]), "the UK left the EU");
    }
}
