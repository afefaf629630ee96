// Texts of the account pages: the therapist's own password and logins, the
// admin's account controls, setup of an added clinic, choosing a clinic at
// login (merged into messages.js).

export const DA_ACCOUNT = {
  'app.nav.account': 'Min konto',
  'account.title': 'Min konto',
  'account.password': 'Skift adgangskode',
  'account.password.intro': 'Når du skifter adgangskode, bliver du logget ud alle andre steder.',
  'account.current': 'Nuværende adgangskode',
  'account.new': 'Ny adgangskode',
  'account.repeat': 'Gentag den nye adgangskode',
  'account.mismatch': 'De to nye adgangskoder er ikke ens.',
  'account.changed': 'Adgangskoden er skiftet. Du er logget ud alle andre steder.',
  'account.change': 'Skift adgangskode',
  'account.everywhere': 'Log ud alle steder',
  'account.everywhere.intro': 'Afslutter alle dine logins, også på andre enheder og denne, og lukker åbne samtaler, du er med i.',
  'account.everywhere.confirm': 'Log ud på alle enheder nu?',
  'password.hint': 'Mindst 12 tegn. Flere ord er lette at huske og svære at gætte. De mest brugte adgangskoder afvises.',

  'admin.inactive': 'Deaktiveret',
  'admin.deactivate': 'Deaktivér',
  'admin.reactivate': 'Genaktivér',
  'admin.deactivate.confirm': 'Deaktivér {name}? Alle {name}s logins og åbne samtaler afsluttes med det samme.',
  'admin.deactivated': '{name} er deaktiveret.',
  'admin.reactivated': '{name} er aktiv igen.',
  'admin.reset': 'Ny adgangskode',
  'admin.reset.label': 'Ny adgangskode til {name}',
  'admin.reset.save': 'Sæt adgangskode',
  'admin.reset.done': 'Ny adgangskode sat for {name}. Alle {name}s logins er afsluttet.',
  'admin.accountActions': 'Handlinger for {name}',

  'setup.clinicAdmin.title': 'Opret administrator for {clinic}',
  'setup.clinicAdmin.intro': 'Klinikken er oprettet af driften. Opret dens første administrator. Linket virker kun én gang.',
  'setup.notFound': 'Linket er ikke gyldigt eller er allerede brugt.',

  'login.chooseClinic': 'Du har en konto i flere klinikker. Vælg, hvilken du vil logge ind i.',
  'login.clinic': 'Klinik',

  'problem.setup_link_expired': 'Linket er udløbet. Bed driften om et nyt link.',
  'problem.last_admin': 'Klinikkens sidste aktive administrator kan ikke deaktiveres. Gør en anden til administrator først.',
  'problem.own_account': 'Skift din egen adgangskode under Min konto.',
  'problem.clinic_details_missing': 'Udfyld klinikkens navn, ydernummer og specialer.',
};

export const EN_ACCOUNT = {
  'app.nav.account': 'My account',
  'account.title': 'My account',
  'account.password': 'Change password',
  'account.password.intro': 'When you change your password, you are logged out everywhere else.',
  'account.current': 'Current password',
  'account.new': 'New password',
  'account.repeat': 'Repeat the new password',
  'account.mismatch': 'The two new passwords differ.',
  'account.changed': 'Your password is changed. You are logged out everywhere else.',
  'account.change': 'Change password',
  'account.everywhere': 'Log out everywhere',
  'account.everywhere.intro': 'Ends all your logins, on other devices and this one, and closes calls you are in.',
  'account.everywhere.confirm': 'Log out on all devices now?',
  'password.hint': 'At least 12 characters. Several words are easy to remember and hard to guess. The most common passwords are refused.',

  'admin.inactive': 'Deactivated',
  'admin.deactivate': 'Deactivate',
  'admin.reactivate': 'Reactivate',
  'admin.deactivate.confirm': 'Deactivate {name}? All logins and open calls of {name} end at once.',
  'admin.deactivated': '{name} is deactivated.',
  'admin.reactivated': '{name} is active again.',
  'admin.reset': 'New password',
  'admin.reset.label': 'New password for {name}',
  'admin.reset.save': 'Set password',
  'admin.reset.done': 'New password set for {name}. All logins of {name} have ended.',
  'admin.accountActions': 'Actions for {name}',

  'setup.clinicAdmin.title': 'Create the administrator of {clinic}',
  'setup.clinicAdmin.intro': 'The operator has created the clinic. Create its first administrator. The link works once only.',
  'setup.notFound': 'The link is not valid or has been used already.',

  'login.chooseClinic': 'You have an account in more than one clinic. Choose which one to log in to.',
  'login.clinic': 'Clinic',

  'problem.setup_link_expired': 'The link has expired. Ask the operator for a new link.',
  'problem.last_admin': 'The clinic’s last active administrator cannot be deactivated. Make someone else administrator first.',
  'problem.own_account': 'Change your own password under My account.',
  'problem.clinic_details_missing': 'Fill in the clinic’s name, provider number and specialties.',
};
