//! A patient's course of treatment (forløb): referral, speciale, diagnosis group and, where one
//! applies, a structured course (struktureret forløb). Every consultation belongs to one course.
//!
//! Source: the patient leaflet on structured courses (seed `002_b8859411eb730dae.txt`).

use std::fmt;
use std::str::FromStr;

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use crate::ids::{CourseId, PatientId};
use crate::service::Speciale;

/// A code that names no known diagnosis group or structured course.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} code {code:?}")]
pub struct UnknownCode {
    /// What was being parsed.
    pub what: &'static str,
    /// The code as given.
    pub code: String,
}

/// The four main diagnosis groups (hoveddiagnosegrupper) a doctor can refer a patient to
/// vederlagsfri fysioterapi (speciale 62) under. Serialised as a stable snake_case code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DiagnosisGroup {
    /// 1. Medfødt eller arvelig lidelse.
    MedfoedtArveligLidelse,
    /// 2. Erhvervet neurologisk lidelse.
    ErhvervetNeurologiskLidelse,
    /// 3. Fysisk handicap som følge af ulykke.
    FysiskHandicapEfterUlykke,
    /// 4. Nedsættelse af led- eller muskelfunktion som følge af inflammatoriske gigtlidelser.
    InflammatoriskGigtlidelse,
}

impl DiagnosisGroup {
    /// All four, in the leaflet's order.
    pub const ALL: [DiagnosisGroup; 4] = [
        DiagnosisGroup::MedfoedtArveligLidelse,
        DiagnosisGroup::ErhvervetNeurologiskLidelse,
        DiagnosisGroup::FysiskHandicapEfterUlykke,
        DiagnosisGroup::InflammatoriskGigtlidelse,
    ];

    /// The stable code (same as the serde form), e.g. `erhvervet_neurologisk_lidelse`.
    pub const fn code(self) -> &'static str {
        match self {
            DiagnosisGroup::MedfoedtArveligLidelse => "medfoedt_arvelig_lidelse",
            DiagnosisGroup::ErhvervetNeurologiskLidelse => "erhvervet_neurologisk_lidelse",
            DiagnosisGroup::FysiskHandicapEfterUlykke => "fysisk_handicap_efter_ulykke",
            DiagnosisGroup::InflammatoriskGigtlidelse => "inflammatorisk_gigtlidelse",
        }
    }

    /// The group's number in the leaflet (1–4).
    pub const fn number(self) -> u8 {
        match self {
            DiagnosisGroup::MedfoedtArveligLidelse => 1,
            DiagnosisGroup::ErhvervetNeurologiskLidelse => 2,
            DiagnosisGroup::FysiskHandicapEfterUlykke => 3,
            DiagnosisGroup::InflammatoriskGigtlidelse => 4,
        }
    }

    /// The Danish name, as the leaflet writes it.
    pub const fn danish_name(self) -> &'static str {
        match self {
            DiagnosisGroup::MedfoedtArveligLidelse => "Medfødt eller arvelig lidelse",
            DiagnosisGroup::ErhvervetNeurologiskLidelse => "Erhvervet neurologisk lidelse",
            DiagnosisGroup::FysiskHandicapEfterUlykke => "Fysisk handicap som følge af ulykke",
            DiagnosisGroup::InflammatoriskGigtlidelse => {
                "Nedsættelse af led- eller muskelfunktion som følge af inflammatoriske gigtlidelser"
            }
        }
    }

    /// The English name.
    pub const fn english_name(self) -> &'static str {
        match self {
            DiagnosisGroup::MedfoedtArveligLidelse => "Congenital or hereditary disorder",
            DiagnosisGroup::ErhvervetNeurologiskLidelse => "Acquired neurological disorder",
            DiagnosisGroup::FysiskHandicapEfterUlykke => {
                "Physical disability resulting from an accident"
            }
            DiagnosisGroup::InflammatoriskGigtlidelse => {
                "Reduced joint or muscle function due to inflammatory rheumatic disease"
            }
        }
    }
}

/// Displays the code.
impl fmt::Display for DiagnosisGroup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// Parses the code.
impl FromStr for DiagnosisGroup {
    type Err = UnknownCode;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        DiagnosisGroup::ALL
            .into_iter()
            .find(|group| group.code() == s)
            .ok_or_else(|| UnknownCode {
                what: "diagnosis group",
                code: s.to_owned(),
            })
    }
}

/// The structured courses (strukturerede forløb) of the 2024 agreements, each under one speciale
/// and available from a start date. Serialised as a stable snake_case code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StructuredCourse {
    /// Sklerose (sp. 62), from January 2024.
    Sklerose,
    /// Parkinson (sp. 62), from January 2025.
    Parkinson,
    /// Følger efter stroke (sp. 62), from January 2026.
    Stroke,
    /// Kronisk leddegigt (sp. 62), from January 2027.
    Leddegigt,
    /// Lumbal og cervikal nerverodstryk (sp. 51), rolled out during 2025.
    NerverodstrykLumbalCervikal,
    /// Lumbal stenose (sp. 51), rolled out during 2025.
    LumbalStenose,
    /// Artrose i hofte og knæ (sp. 51), rolled out during 2025.
    ArtroseHofteKnae,
    /// Smerter i lænderyg (sp. 51), rolled out during 2025.
    LaenderygSmerter,
}

impl StructuredCourse {
    /// All structured courses: the vederlagsfri ones, then the almen ones.
    pub const ALL: [StructuredCourse; 8] = [
        StructuredCourse::Sklerose,
        StructuredCourse::Parkinson,
        StructuredCourse::Stroke,
        StructuredCourse::Leddegigt,
        StructuredCourse::NerverodstrykLumbalCervikal,
        StructuredCourse::LumbalStenose,
        StructuredCourse::ArtroseHofteKnae,
        StructuredCourse::LaenderygSmerter,
    ];

    /// The stable code (same as the serde form), e.g. `artrose_hofte_knae`.
    pub const fn code(self) -> &'static str {
        match self {
            StructuredCourse::Sklerose => "sklerose",
            StructuredCourse::Parkinson => "parkinson",
            StructuredCourse::Stroke => "stroke",
            StructuredCourse::Leddegigt => "leddegigt",
            StructuredCourse::NerverodstrykLumbalCervikal => "nerverodstryk_lumbal_cervikal",
            StructuredCourse::LumbalStenose => "lumbal_stenose",
            StructuredCourse::ArtroseHofteKnae => "artrose_hofte_knae",
            StructuredCourse::LaenderygSmerter => "laenderyg_smerter",
        }
    }

    /// The Danish name, as the leaflet writes it.
    pub const fn danish_name(self) -> &'static str {
        match self {
            StructuredCourse::Sklerose => "Sklerose",
            StructuredCourse::Parkinson => "Parkinson",
            StructuredCourse::Stroke => "Følger efter stroke",
            StructuredCourse::Leddegigt => "Kronisk leddegigt",
            StructuredCourse::NerverodstrykLumbalCervikal => {
                "Lumbal og cervikal nerverodstryk (nerverodspåvirkning)"
            }
            StructuredCourse::LumbalStenose => "Lumbal stenose (forsnævring af rygmarvskanalen)",
            StructuredCourse::ArtroseHofteKnae => "Artrose i hofte og knæ (slidgigt)",
            StructuredCourse::LaenderygSmerter => "Smerter i lænderyg",
        }
    }

    /// The English name.
    pub const fn english_name(self) -> &'static str {
        match self {
            StructuredCourse::Sklerose => "Multiple sclerosis",
            StructuredCourse::Parkinson => "Parkinson's disease",
            StructuredCourse::Stroke => "Sequelae of stroke",
            StructuredCourse::Leddegigt => "Rheumatoid arthritis",
            StructuredCourse::NerverodstrykLumbalCervikal => {
                "Lumbar and cervical nerve-root compression"
            }
            StructuredCourse::LumbalStenose => "Lumbar spinal stenosis",
            StructuredCourse::ArtroseHofteKnae => "Hip and knee osteoarthritis",
            StructuredCourse::LaenderygSmerter => "Low-back pain",
        }
    }

    /// The speciale the course belongs to.
    pub const fn speciale(self) -> Speciale {
        match self {
            StructuredCourse::Sklerose
            | StructuredCourse::Parkinson
            | StructuredCourse::Stroke
            | StructuredCourse::Leddegigt => Speciale::Vederlagsfri,
            StructuredCourse::NerverodstrykLumbalCervikal
            | StructuredCourse::LumbalStenose
            | StructuredCourse::ArtroseHofteKnae
            | StructuredCourse::LaenderygSmerter => Speciale::Almen,
        }
    }

    /// The first day a course can be opened.
    ///
    /// The leaflet gives a month for the vederlagsfri courses (January 2024/2025/2026/2027),
    /// read as the 1st. For the almen courses it says they are "developed and rolled out during
    /// 2025" without a date per course; this takes 2025-01-01 for all four, the earliest the
    /// leaflet allows, so a clinic that starts one in 2025 is never refused.
    pub fn available_from(self) -> NaiveDate {
        let year = match self {
            StructuredCourse::Sklerose => 2024,
            StructuredCourse::Parkinson => 2025,
            StructuredCourse::Stroke => 2026,
            StructuredCourse::Leddegigt => 2027,
            StructuredCourse::NerverodstrykLumbalCervikal
            | StructuredCourse::LumbalStenose
            | StructuredCourse::ArtroseHofteKnae
            | StructuredCourse::LaenderygSmerter => 2025,
        };
        // January 1st exists in every year chrono can represent.
        NaiveDate::from_ymd_opt(year, 1, 1).unwrap_or(NaiveDate::MIN)
    }

    /// The structured courses that can be opened under `speciale` on `day`.
    pub fn available(speciale: Speciale, day: NaiveDate) -> Vec<StructuredCourse> {
        StructuredCourse::ALL
            .into_iter()
            .filter(|course| course.speciale() == speciale && course.available_from() <= day)
            .collect()
    }
}

/// Displays the code.
impl fmt::Display for StructuredCourse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// Parses the code.
impl FromStr for StructuredCourse {
    type Err = UnknownCode;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        StructuredCourse::ALL
            .into_iter()
            .find(|course| course.code() == s)
            .ok_or_else(|| UnknownCode {
                what: "structured course",
                code: s.to_owned(),
            })
    }
}

/// Why a course cannot be opened as given.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CourseError {
    /// A structured course under the other speciale.
    #[error("the structured course {course} belongs to speciale {}, not {speciale}", .course.speciale())]
    StructuredCourseWrongSpeciale {
        /// The course asked for.
        course: StructuredCourse,
        /// The speciale the course was to be opened under.
        speciale: Speciale,
    },
    /// A structured course before its start date.
    #[error("the structured course {course} can be opened from {}, not on {opened_on}", .course.available_from())]
    StructuredCourseNotYetAvailable {
        /// The course asked for.
        course: StructuredCourse,
        /// The day the course was to be opened.
        opened_on: NaiveDate,
    },
    /// Speciale 62 without one of the four diagnosis groups.
    #[error("vederlagsfri fysioterapi (speciale 62) requires a diagnosis group")]
    MissingDiagnosisGroup,
    /// Speciale 51 with a vederlagsfri diagnosis group.
    #[error("almen fysioterapi (speciale 51) takes no vederlagsfri diagnosis group, got {0}")]
    DiagnosisGroupNotAllowed(DiagnosisGroup),
    /// The course would be opened before the referral it rests on.
    #[error("a course cannot be opened ({opened_on}) before its referral ({referral_date})")]
    OpenedBeforeReferral {
        /// The referral's date.
        referral_date: NaiveDate,
        /// The day the course was to be opened.
        opened_on: NaiveDate,
    },
}

/// A patient's course of treatment, valid by construction (see [`Course::open`]).
///
/// Serde: a plain object with the fields below; deserialising re-checks [`Course::open`]'s rules.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "CourseRecord")]
pub struct Course {
    id: CourseId,
    patient: PatientId,
    speciale: Speciale,
    diagnosis_group: Option<DiagnosisGroup>,
    structured: Option<StructuredCourse>,
    referral_date: NaiveDate,
    opened_on: NaiveDate,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CourseRecord {
    id: CourseId,
    patient: PatientId,
    speciale: Speciale,
    diagnosis_group: Option<DiagnosisGroup>,
    structured: Option<StructuredCourse>,
    referral_date: NaiveDate,
    opened_on: NaiveDate,
}

impl TryFrom<CourseRecord> for Course {
    type Error = CourseError;

    fn try_from(record: CourseRecord) -> Result<Self, Self::Error> {
        Course::open(
            record.id,
            record.patient,
            record.speciale,
            record.diagnosis_group,
            record.structured,
            record.referral_date,
            record.opened_on,
        )
    }
}

impl Course {
    /// Opens a course on the Danish day `opened_on`, checking in this order:
    ///
    /// 1. a structured course belongs to `speciale` ([`CourseError::StructuredCourseWrongSpeciale`]);
    /// 2. and is available on `opened_on` ([`CourseError::StructuredCourseNotYetAvailable`]);
    /// 3. speciale 62 has a diagnosis group ([`CourseError::MissingDiagnosisGroup`]);
    /// 4. speciale 51 has none ([`CourseError::DiagnosisGroupNotAllowed`]): the four groups are
    ///    the referral grounds of vederlagsfri fysioterapi only;
    /// 5. the course is not opened before its referral ([`CourseError::OpenedBeforeReferral`]).
    pub fn open(
        id: CourseId,
        patient: PatientId,
        speciale: Speciale,
        diagnosis_group: Option<DiagnosisGroup>,
        structured: Option<StructuredCourse>,
        referral_date: NaiveDate,
        opened_on: NaiveDate,
    ) -> Result<Course, CourseError> {
        if let Some(course) = structured {
            if course.speciale() != speciale {
                return Err(CourseError::StructuredCourseWrongSpeciale { course, speciale });
            }
            if opened_on < course.available_from() {
                return Err(CourseError::StructuredCourseNotYetAvailable { course, opened_on });
            }
        }
        match (speciale, diagnosis_group) {
            (Speciale::Vederlagsfri, None) => return Err(CourseError::MissingDiagnosisGroup),
            (Speciale::Almen, Some(group)) => {
                return Err(CourseError::DiagnosisGroupNotAllowed(group))
            }
            _ => {}
        }
        if opened_on < referral_date {
            return Err(CourseError::OpenedBeforeReferral {
                referral_date,
                opened_on,
            });
        }
        Ok(Course {
            id,
            patient,
            speciale,
            diagnosis_group,
            structured,
            referral_date,
            opened_on,
        })
    }

    /// The course's id.
    pub fn id(&self) -> CourseId {
        self.id
    }

    /// The patient the course is for.
    pub fn patient(&self) -> PatientId {
        self.patient
    }

    /// The speciale every consultation of the course is billed under.
    pub fn speciale(&self) -> Speciale {
        self.speciale
    }

    /// The vederlagsfri diagnosis group (always `Some` for speciale 62, `None` for 51).
    pub fn diagnosis_group(&self) -> Option<DiagnosisGroup> {
        self.diagnosis_group
    }

    /// The structured course, if the course follows one.
    pub fn structured(&self) -> Option<StructuredCourse> {
        self.structured
    }

    /// The date of the doctor's referral.
    pub fn referral_date(&self) -> NaiveDate {
        self.referral_date
    }

    /// The Danish day the course was opened.
    pub fn opened_on(&self) -> NaiveDate {
        self.opened_on
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    fn date(text: &str) -> NaiveDate {
        text.parse().unwrap()
    }

    fn open(
        speciale: Speciale,
        group: Option<DiagnosisGroup>,
        structured: Option<StructuredCourse>,
        opened_on: &str,
    ) -> Result<Course, CourseError> {
        Course::open(
            CourseId::from_uuid(Uuid::from_u128(1)),
            PatientId::from_uuid(Uuid::from_u128(2)),
            speciale,
            group,
            structured,
            date("2023-12-01"),
            date(opened_on),
        )
    }

    use DiagnosisGroup::*;
    use Speciale::{Almen, Vederlagsfri};
    use StructuredCourse::*;

    #[test]
    fn catalogue_matches_the_leaflet() {
        let expected = [
            (Sklerose, Vederlagsfri, "2024-01-01"),
            (Parkinson, Vederlagsfri, "2025-01-01"),
            (Stroke, Vederlagsfri, "2026-01-01"),
            (Leddegigt, Vederlagsfri, "2027-01-01"),
            (NerverodstrykLumbalCervikal, Almen, "2025-01-01"),
            (LumbalStenose, Almen, "2025-01-01"),
            (ArtroseHofteKnae, Almen, "2025-01-01"),
            (LaenderygSmerter, Almen, "2025-01-01"),
        ];
        for (course, speciale, from) in expected {
            assert_eq!(course.speciale(), speciale, "{course}");
            assert_eq!(course.available_from(), date(from), "{course}");
            assert!(!course.danish_name().is_empty() && !course.english_name().is_empty());
        }
        assert_eq!(Stroke.danish_name(), "Følger efter stroke");
        assert_eq!(Leddegigt.danish_name(), "Kronisk leddegigt");
        assert_eq!(
            StructuredCourse::available(Vederlagsfri, date("2025-06-01")),
            vec![Sklerose, Parkinson]
        );
        assert_eq!(
            StructuredCourse::available(Almen, date("2024-12-31")),
            Vec::<StructuredCourse>::new()
        );
    }

    #[test]
    fn diagnosis_groups_match_the_leaflet() {
        let numbers: Vec<u8> = DiagnosisGroup::ALL.iter().map(|g| g.number()).collect();
        assert_eq!(numbers, [1, 2, 3, 4]);
        assert_eq!(
            FysiskHandicapEfterUlykke.danish_name(),
            "Fysisk handicap som følge af ulykke"
        );
    }

    #[test]
    fn codes_are_stable_snake_case_and_round_trip() {
        for group in DiagnosisGroup::ALL {
            assert_eq!(group.code().parse::<DiagnosisGroup>(), Ok(group));
            assert_eq!(
                serde_json::to_string(&group).unwrap(),
                format!("\"{}\"", group.code())
            );
        }
        for course in StructuredCourse::ALL {
            assert_eq!(course.code().parse::<StructuredCourse>(), Ok(course));
            assert_eq!(
                serde_json::to_string(&course).unwrap(),
                format!("\"{}\"", course.code())
            );
        }
        assert!("Sklerose".parse::<StructuredCourse>().is_err());
        assert!("gigt".parse::<DiagnosisGroup>().is_err());
    }

    #[test]
    fn opens_valid_courses() {
        let course = open(
            Vederlagsfri,
            Some(ErhvervetNeurologiskLidelse),
            Some(Parkinson),
            "2025-01-01",
        )
        .unwrap();
        assert_eq!(course.structured(), Some(Parkinson));
        assert_eq!(course.speciale(), Vederlagsfri);
        assert!(open(Almen, None, None, "2024-02-01").is_ok());
        assert!(open(Almen, None, Some(ArtroseHofteKnae), "2025-03-01").is_ok());
        assert!(open(
            Vederlagsfri,
            Some(MedfoedtArveligLidelse),
            None,
            "2024-02-01"
        )
        .is_ok());
    }

    #[test]
    fn structured_course_only_under_its_speciale() {
        assert_eq!(
            open(Almen, None, Some(Sklerose), "2024-06-01"),
            Err(CourseError::StructuredCourseWrongSpeciale {
                course: Sklerose,
                speciale: Almen
            })
        );
        assert_eq!(
            open(
                Vederlagsfri,
                Some(ErhvervetNeurologiskLidelse),
                Some(LumbalStenose),
                "2025-06-01"
            ),
            Err(CourseError::StructuredCourseWrongSpeciale {
                course: LumbalStenose,
                speciale: Vederlagsfri
            })
        );
    }

    #[test]
    fn structured_course_only_from_its_start() {
        assert_eq!(
            open(
                Vederlagsfri,
                Some(ErhvervetNeurologiskLidelse),
                Some(Stroke),
                "2025-12-31"
            ),
            Err(CourseError::StructuredCourseNotYetAvailable {
                course: Stroke,
                opened_on: date("2025-12-31")
            })
        );
        assert!(open(
            Vederlagsfri,
            Some(ErhvervetNeurologiskLidelse),
            Some(Stroke),
            "2026-01-01"
        )
        .is_ok());
        assert!(open(Almen, None, Some(LaenderygSmerter), "2024-12-31").is_err());
    }

    #[test]
    fn diagnosis_group_rules() {
        assert_eq!(
            open(Vederlagsfri, None, None, "2024-06-01"),
            Err(CourseError::MissingDiagnosisGroup)
        );
        assert_eq!(
            open(Almen, Some(InflammatoriskGigtlidelse), None, "2024-06-01"),
            Err(CourseError::DiagnosisGroupNotAllowed(
                InflammatoriskGigtlidelse
            ))
        );
    }

    #[test]
    fn not_before_referral() {
        assert_eq!(
            open(Almen, None, None, "2023-11-30"),
            Err(CourseError::OpenedBeforeReferral {
                referral_date: date("2023-12-01"),
                opened_on: date("2023-11-30")
            })
        );
    }

    #[test]
    fn serde_round_trips_and_revalidates() {
        let course = open(
            Vederlagsfri,
            Some(InflammatoriskGigtlidelse),
            Some(Leddegigt),
            "2027-02-01",
        )
        .unwrap();
        let json = serde_json::to_value(&course).unwrap();
        assert_eq!(json["speciale"], 62);
        assert_eq!(json["diagnosis_group"], "inflammatorisk_gigtlidelse");
        assert_eq!(json["structured"], "leddegigt");
        let back: Course = serde_json::from_value(json.clone()).unwrap();
        assert_eq!(back, course);

        let mut bad = json;
        bad["diagnosis_group"] = serde_json::Value::Null;
        let err = serde_json::from_value::<Course>(bad).unwrap_err();
        assert!(
            err.to_string().contains("requires a diagnosis group"),
            "{err}"
        );
    }
}
