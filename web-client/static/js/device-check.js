// The camera and microphone check that the patient's join page and the
// public rehearsal page (/proeve) share: opening the devices for the check,
// the level meter that decides "we can hear you", and the status lines with
// their plain-words help (texts `check.*` and `media.*` in messages.js).
// The media work itself is devices.js; this module only puts it in words.

import { levelMeter, openMedia } from './devices.js';
import { h, replace } from './dom.js';
import { t } from './i18n.js';

/** The meter level (0..1) from which the microphone counts as heard. */
const HEARD_LEVEL = 0.12;

/**
 * Opens camera and microphone for the check. Returns {stream, problem,
 * videoProblem} with the problem codes of devices.js `openMedia` (null
 * when there is none); a stream without a camera track is a camera problem.
 */
export async function openForCheck({ audioId = '', videoId = '' } = {}) {
  const res = await openMedia({ audioId, videoId });
  const stream = res.stream || null;
  return {
    stream,
    problem: res.problem || null,
    videoProblem: res.videoProblem || (stream && !stream.getVideoTracks().length ? 'nodevice' : null),
  };
}

/**
 * Shows the microphone's level on `meter` and calls `onHeard()` once, the
 * first time it is loud enough. Returns a function that stops it.
 */
export function watchMicrophone(stream, meter, onHeard) {
  let heard = false;
  return levelMeter(stream, (level) => {
    meter.value = level;
    if (level > HEARD_LEVEL && !heard) {
      heard = true;
      onHeard();
    }
  });
}

/** A status line: a mark (✓, ! or …) and a sentence; `kind` ok | bad | pending. */
export function setStatus(el, kind, text) {
  el.className = `status ${kind}`;
  replace(el, h('span', { class: 'mark', 'aria-hidden': 'true', text: kind === 'ok' ? '✓' : kind === 'bad' ? '!' : '…' }), ' ', text);
}

/** What is wrong and what to do about it, as a red notice. */
export function problemHelp(textKey, helpKey) {
  return h('div', { class: 'notice bad' }, h('p', { text: t(textKey) }), helpKey ? h('p', { text: t(helpKey) }) : null);
}

/** The camera's status line and help for `media` ({stream, problem, videoProblem}). */
export function renderCamera(statusEl, helpEl, media) {
  if (media.problem) {
    setStatus(statusEl, 'bad', t(`media.${media.problem}`));
    replace(helpEl, problemHelp(`media.${media.problem}`, `media.${media.problem}.help`));
  } else if (!media.stream) {
    setStatus(statusEl, 'pending', t('check.camera.wait'));
    replace(helpEl);
  } else if (media.videoProblem) {
    setStatus(statusEl, 'bad', t('media.nocamera'));
    replace(helpEl, problemHelp(`media.${media.videoProblem}`, `media.${media.videoProblem}.help`));
  } else {
    setStatus(statusEl, 'ok', t('check.camera.ok'));
    replace(helpEl);
  }
}

/** The microphone's status line: its problem, heard, or not heard yet. */
export function renderMicrophone(statusEl, media, heard) {
  if (media.problem) setStatus(statusEl, 'bad', t(`media.${media.problem}`));
  else if (heard) setStatus(statusEl, 'ok', t('check.mic.ok'));
  else setStatus(statusEl, 'pending', t('check.mic.wait'));
}
