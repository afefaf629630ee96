//! iCalendar (RFC 5545) invites and the invitation text for the patient:
//! the time, the join link, the rehearsal page and what the patient pays,
//! in Danish and English; no personal data.

use chrono::{DateTime, Datelike, Duration, Utc};
use konsult_domain::calendar::DANISH_TIME_ZONE;
use konsult_domain::ConsultationId;

use crate::routes::join::PaymentDto;

const WEEKDAYS_DA: [&str; 7] = [
    "mandag", "tirsdag", "onsdag", "torsdag", "fredag", "lørdag", "søndag",
];
const MONTHS_DA: [&str; 12] = [
    "januar",
    "februar",
    "marts",
    "april",
    "maj",
    "juni",
    "juli",
    "august",
    "september",
    "oktober",
    "november",
    "december",
];

/// The consultation's start in Danish words and time: `torsdag 26. november
/// 2026 kl. 10.00`.
fn danish_when(start: DateTime<Utc>) -> String {
    let local = start.with_timezone(&DANISH_TIME_ZONE);
    format!(
        "{} {}. {} {} kl. {}",
        WEEKDAYS_DA[local.weekday().num_days_from_monday() as usize],
        local.day(),
        MONTHS_DA[local.month0() as usize],
        local.year(),
        local.format("%H.%M")
    )
}

/// The start in English: `Thursday 26 November 2026 at 10:00 (Danish time)`.
fn english_when(start: DateTime<Utc>) -> String {
    let local = start.with_timezone(&DANISH_TIME_ZONE);
    format!("{} (Danish time)", local.format("%A %-d %B %Y at %H:%M"))
}

/// The addresses an invitation gives the patient.
#[derive(Debug, Clone, Copy)]
pub struct PatientLinks<'a> {
    /// The consultation's join link.
    pub join: &'a str,
    /// The public rehearsal page, where camera and microphone can be tried
    /// any day before (`crate::web::REHEARSAL_PATH` on the public URL).
    pub rehearsal: &'a str,
}

/// The invitation for the patient, Danish then English: who the
/// consultation is with, when, what it costs the patient, the link, and
/// the rehearsal page.
pub fn invitation_text(
    clinic_name: &str,
    links: PatientLinks<'_>,
    start: DateTime<Utc>,
    payment: &PaymentDto,
) -> (String, String) {
    let PatientLinks {
        join: join_url,
        rehearsal: rehearsal_url,
    } = links;
    let da = format!(
        "Du har en videokonsultation med {clinic_name} {}.\n{}\nÅbn linket lidt før tid og følg vejledningen på skærmen:\n{join_url}\nDu kan prøve dit kamera og din mikrofon i forvejen:\n{rehearsal_url}",
        danish_when(start),
        payment.da
    );
    let en = format!(
        "You have a video consultation with {clinic_name} on {}.\n{}\nOpen the link a little before the time and follow the steps on the screen:\n{join_url}\nYou can try your camera and microphone beforehand:\n{rehearsal_url}",
        english_when(start),
        payment.en
    );
    (da, en)
}

fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            ';' => out.push_str("\\;"),
            ',' => out.push_str("\\,"),
            '\n' => out.push_str("\\n"),
            '\r' => {}
            c => out.push(c),
        }
    }
    out
}

/// Folds a content line at 75 octets (RFC 5545 §3.1), never inside a
/// UTF-8 character, and ends it with CRLF.
fn fold(line: &str) -> String {
    let mut out = String::new();
    let mut used = 0;
    for c in line.chars() {
        let len = c.len_utf8();
        if used + len > 75 {
            out.push_str("\r\n ");
            used = 1;
        }
        out.push(c);
        used += len;
    }
    out.push_str("\r\n");
    out
}

fn stamp(t: DateTime<Utc>) -> String {
    t.format("%Y%m%dT%H%M%SZ").to_string()
}

/// The invite for a consultation; its description is the invitation text.
pub fn invite(
    id: ConsultationId,
    clinic_name: &str,
    links: PatientLinks<'_>,
    start: DateTime<Utc>,
    length_minutes: u32,
    payment: &PaymentDto,
    now: DateTime<Utc>,
) -> String {
    let (da, en) = invitation_text(clinic_name, links, start, payment);
    let join_url = links.join;
    let end = start + Duration::minutes(i64::from(length_minutes));
    let lines = [
        "BEGIN:VCALENDAR".to_owned(),
        "VERSION:2.0".to_owned(),
        "PRODID:-//Konsult//Videokonsultation//DA".to_owned(),
        "METHOD:PUBLISH".to_owned(),
        "BEGIN:VEVENT".to_owned(),
        format!("UID:{id}@konsult"),
        format!("DTSTAMP:{}", stamp(now)),
        format!("DTSTART:{}", stamp(start)),
        format!("DTEND:{}", stamp(end)),
        format!(
            "SUMMARY:{}",
            escape(&format!("Videokonsultation – {clinic_name}"))
        ),
        format!("DESCRIPTION:{}", escape(&format!("{da}\n\n{en}"))),
        format!("URL:{join_url}"),
        "BEGIN:VALARM".to_owned(),
        "TRIGGER:-PT15M".to_owned(),
        "ACTION:DISPLAY".to_owned(),
        "DESCRIPTION:Videokonsultation om 15 minutter".to_owned(),
        "END:VALARM".to_owned(),
        "END:VEVENT".to_owned(),
        "END:VCALENDAR".to_owned(),
    ];
    lines.iter().map(|l| fold(l)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invite_has_the_times_and_link_with_crlf_and_folding() {
        let start: DateTime<Utc> = "2026-11-26T09:00:00Z".parse().unwrap();
        let url = format!("https://klinik.example/join/{}", "x".repeat(60));
        let ics = invite(
            ConsultationId::from_uuid(uuid::Uuid::nil()),
            "Fysio, Nord; Aps",
            links(&url),
            start,
            30,
            &payment(),
            start,
        );
        assert!(ics.starts_with("BEGIN:VCALENDAR\r\n"));
        assert!(ics.contains("DTSTART:20261126T090000Z\r\n"));
        assert!(ics.contains("DTEND:20261126T093000Z\r\n"));
        assert!(ics.contains("Fysio\\, Nord\\; Aps"));
        for line in ics.split("\r\n") {
            assert!(line.len() <= 75, "{line}");
        }
        let unfolded = ics.replace("\r\n ", "");
        assert!(unfolded.contains(&format!("URL:{url}")));
        assert!(ics.ends_with("END:VCALENDAR\r\n"));
    }

    fn links(join: &str) -> PatientLinks<'_> {
        PatientLinks {
            join,
            rehearsal: "https://klinik.example/proeve",
        }
    }

    fn payment() -> PaymentDto {
        use konsult_domain::{Money, PatientPayment, Speciale};
        PaymentDto::new(
            Speciale::Almen,
            PatientPayment::OwnPayment {
                amount: Money::from_ore(19414),
                fee: Money::from_ore(31983),
                unconfirmed: false,
            },
        )
    }

    #[test]
    fn invite_and_invitation_say_when_and_what_the_patient_pays() {
        let start: DateTime<Utc> = "2026-11-26T09:00:00Z".parse().unwrap();
        let url = "https://klinik.example/join/abc";
        let (da, en) = invitation_text("Fysio Nord", links(url), start, &payment());
        assert_eq!(
            da,
            "Du har en videokonsultation med Fysio Nord torsdag 26. november 2026 kl. 10.00.\n\
             Din egenbetaling er 194,14 kr.\n\
             Åbn linket lidt før tid og følg vejledningen på skærmen:\n\
             https://klinik.example/join/abc\n\
             Du kan prøve dit kamera og din mikrofon i forvejen:\n\
             https://klinik.example/proeve"
        );
        assert!(en.contains("Thursday 26 November 2026 at 10:00 (Danish time)"));
        assert!(en.contains("You pay DKK 194.14 yourself."));
        assert!(en.ends_with(
            "https://klinik.example/join/abc\n\
             You can try your camera and microphone beforehand:\n\
             https://klinik.example/proeve"
        ));
        let ics = invite(
            ConsultationId::from_uuid(uuid::Uuid::nil()),
            "Fysio Nord",
            links(url),
            start,
            30,
            &payment(),
            start,
        );
        let unfolded = ics.replace("\r\n ", "");
        assert!(unfolded.contains("Din egenbetaling er 194\\,14 kr."));
        assert!(unfolded.contains("You pay DKK 194.14 yourself."));
        assert!(unfolded.contains("i forvejen:\\nhttps://klinik.example/proeve"));
        assert!(unfolded.contains("URL:https://klinik.example/join/abc\r\n"));
    }
}
