// Starts the real `konsult` binary for one test file: a free port, a fresh
// temporary data directory, the embedded TURN relay on a free port that may
// relay between loopback peers (both browsers run on this machine), and the
// one-time setup link read from its standard output.

import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
export const repoRoot = path.resolve(here, '..', '..', '..');

let binary = null;

/**
 * The path of the konsult binary: $KONSULT_BIN, or a fresh
 * `cargo build -p konsult-server --bin konsult` in the workspace's target
 * directory (a no-op when it is up to date).
 */
export function konsultBinary() {
  if (binary) return binary;
  if (process.env.KONSULT_BIN) {
    binary = process.env.KONSULT_BIN;
    return binary;
  }
  const build = spawnSync('cargo', ['build', '-q', '-p', 'konsult-server', '--bin', 'konsult'], {
    cwd: repoRoot,
    stdio: ['ignore', 'inherit', 'inherit'],
  });
  if (build.status !== 0) throw new Error('cargo build of konsult failed');
  const meta = spawnSync('cargo', ['metadata', '--format-version', '1', '--no-deps'], {
    cwd: repoRoot,
    encoding: 'utf8',
    maxBuffer: 64 * 1024 * 1024,
  });
  if (meta.status !== 0) throw new Error('cargo metadata failed');
  const target = JSON.parse(meta.stdout).target_directory;
  binary = path.join(target, 'debug', 'konsult');
  if (!existsSync(binary)) throw new Error(`no binary at ${binary}`);
  return binary;
}

/**
 * Starts a server. Resolves {baseUrl, setupLink, logs(), stop()} once the
 * setup link is printed. `env` adds KONSULT_ settings.
 */
export async function startServer({ env = {}, demo = false } = {}) {
  const bin = konsultBinary();
  const dataDir = mkdtempSync(path.join(tmpdir(), 'konsult-browser-'));
  const child = spawn(bin, demo ? ['serve', '--demo'] : ['serve'], {
    cwd: dataDir,
    env: {
      PATH: process.env.PATH,
      HOME: process.env.HOME,
      RUST_LOG: process.env.RUST_LOG || 'info',
      KONSULT_LISTEN: '127.0.0.1:0',
      KONSULT_DATA_DIR: dataDir,
      KONSULT_TURN__LISTEN: '127.0.0.1:0',
      KONSULT_TURN__ALLOW_LOOPBACK_PEERS: 'true',
      // Calls in tests are seconds long: two seconds of media each way make
      // the evidence of two-way media (the default is 30 s).
      KONSULT_SIGNALING__MIN_TWO_WAY_SECONDS: '2',
      KONSULT_SIGNALING__MIN_TWO_WAY_PACKETS: '20',
      ...env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  let demoInfo = null;
  child.stderr.setEncoding('utf8');
  child.stdout.setEncoding('utf8');
  child.stderr.on('data', (d) => {
    err += d;
  });
  const setupLink = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`konsult did not print its setup link in time:\n${err}`)), 60000);
    child.stdout.on('data', (d) => {
      out += d;
      // The setup link; with `demo`, the dashboard's address (the demo
      // needs no setup), its password and the patient's link.
      const m = demo
        ? /Therapist dashboard: (\S+)\/app[\s\S]*password: (\S+)[\s\S]*\n\s+(\S+\/join\/\S+)/.exec(out)
        : /(https?:\/\/[^\s]+\/app\/setup#[^\s]+)/.exec(out);
      if (m) {
        clearTimeout(timer);
        if (demo) demoInfo = { password: m[2], joinUrl: m[3] };
        resolve(demo ? `${m[1]}/app` : m[1]);
      }
    });
    child.on('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`konsult exited with ${code}:\n${err}`));
    });
  });
  const baseUrl = new URL(setupLink).origin;
  let stopped = false;
  return {
    baseUrl,
    setupLink,
    demo: demoInfo,
    logs: () => err,
    async stop() {
      if (stopped) return;
      stopped = true;
      child.removeAllListeners('exit');
      const exited = new Promise((resolve) => child.once('exit', resolve));
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 15000);
      await exited;
      clearTimeout(timer);
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}
