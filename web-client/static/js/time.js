// Danish calendar time without a library: the consultation's day and clock
// are those of Europe/Copenhagen whatever zone the browser is in.

/** The time zone every date and time in Konsult is shown and entered in. */
export const TZ = 'Europe/Copenhagen';

const partsFormat = new Intl.DateTimeFormat('en-GB', {
  timeZone: TZ,
  hourCycle: 'h23',
  year: 'numeric',
  month: '2-digit',
  day: '2-digit',
  hour: '2-digit',
  minute: '2-digit',
  second: '2-digit',
});

/** The Copenhagen wall-clock parts of an instant. */
export function copenhagenParts(date) {
  const out = {};
  for (const p of partsFormat.formatToParts(date)) {
    if (p.type !== 'literal') out[p.type] = Number(p.value);
  }
  return out;
}

const pad = (n, w = 2) => String(n).padStart(w, '0');

/** YYYY-MM-DD of an instant in Copenhagen (default: now). */
export function copenhagenDate(date = new Date()) {
  const p = copenhagenParts(date);
  return `${p.year}-${pad(p.month)}-${pad(p.day)}`;
}

/** HH:MM of an instant in Copenhagen. */
export function copenhagenTime(date = new Date()) {
  const p = copenhagenParts(date);
  return `${pad(p.hour)}:${pad(p.minute)}`;
}

/** Minutes Copenhagen is ahead of UTC at an instant (60 or 120). */
function offsetMinutes(date) {
  const p = copenhagenParts(date);
  const asUtc = Date.UTC(p.year, p.month - 1, p.day, p.hour, p.minute, p.second);
  return Math.round((asUtc - Math.floor(date.getTime() / 1000) * 1000) / 60000);
}

/**
 * The instant of a Copenhagen wall-clock date ("YYYY-MM-DD") and time
 * ("HH:MM"), as an RFC 3339 string with its offset. Returns null for input
 * that is not a date and time. In the autumn hour that happens twice the
 * earlier one is chosen; a spring-gap time moves forward by the gap.
 */
export function copenhagenToRfc3339(dateStr, timeStr) {
  const d = /^(\d{4})-(\d{2})-(\d{2})$/.exec(dateStr || '');
  const t = /^(\d{2}):(\d{2})$/.exec(timeStr || '');
  if (!d || !t) return null;
  const wall = Date.UTC(+d[1], +d[2] - 1, +d[3], +t[1], +t[2]);
  if (Number.isNaN(wall)) return null;
  // Two rounds find the offset in force at the resulting instant.
  let guess = wall - offsetMinutes(new Date(wall)) * 60000;
  guess = wall - offsetMinutes(new Date(guess)) * 60000;
  const off = offsetMinutes(new Date(guess));
  const local = new Date(guess + off * 60000);
  const sign = off >= 0 ? '+' : '-';
  const abs = Math.abs(off);
  return (
    `${local.getUTCFullYear()}-${pad(local.getUTCMonth() + 1)}-${pad(local.getUTCDate())}` +
    `T${pad(local.getUTCHours())}:${pad(local.getUTCMinutes())}:00${sign}${pad(Math.floor(abs / 60))}:${pad(abs % 60)}`
  );
}

/** Adds days to a YYYY-MM-DD date. */
export function addDays(dateStr, days) {
  const [y, m, d] = dateStr.split('-').map(Number);
  const x = new Date(Date.UTC(y, m - 1, d + days));
  return `${x.getUTCFullYear()}-${pad(x.getUTCMonth() + 1)}-${pad(x.getUTCDate())}`;
}
