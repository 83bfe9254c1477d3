import { describe, expect, it } from 'vitest';
import { ManualClock } from '../clock.ts';
import { MASS_OFFLINE_MIN, type NatsView, PresenceOfflineGuard } from './offline-guard.ts';

const OFFLINE_S = 90;

function setup(nats: Partial<NatsView> = {}) {
  const clock = new ManualClock(Date.parse('2025-01-01T00:00:00Z'));
  const view = { enabled: false, connected: false, connectedOnce: false, since: clock.now(), ...nats };
  const warnings: string[] = [];
  const log = { warn: (_obj: object, msg: string) => void warnings.push(msg) };
  const guard = new PresenceOfflineGuard({
    startedAt: clock.now(),
    offlineAfterS: OFFLINE_S,
    nats: view,
    log,
  });
  return { clock, view, guard, warnings };
}

describe('PresenceOfflineGuard: mass offline', () => {
  it('holds when more than half of the live projects, and at least 10, would go offline', () => {
    const { clock, guard } = setup();
    guard.observe({ pending: 11, live: 20 }, clock.now());
    expect(guard.state(clock.now()).holdAll).toBe(true);
    expect(guard.health(clock.now())).toMatchObject({ status: 'degraded', mass_offline: { pending: 11 } });
  });

  it('does not hold for a few projects or for less than half', () => {
    const { clock, guard } = setup();
    guard.observe({ pending: MASS_OFFLINE_MIN - 1, live: MASS_OFFLINE_MIN }, clock.now());
    expect(guard.state(clock.now()).holdAll).toBe(false);
    guard.observe({ pending: 50, live: 100 }, clock.now());
    expect(guard.state(clock.now()).holdAll).toBe(false);
    expect(guard.health(clock.now()).status).toBe('ok');
  });

  it('releases after one offline threshold and does not re-arm for the same event', () => {
    const { clock, guard } = setup();
    guard.observe({ pending: 30, live: 40 }, clock.now());
    clock.advance(OFFLINE_S * 1000 - 1);
    guard.observe({ pending: 30, live: 40 }, clock.now());
    expect(guard.state(clock.now()).holdAll).toBe(true);
    clock.advance(1);
    expect(guard.state(clock.now()).holdAll).toBe(false);
    guard.observe({ pending: 30, live: 40 }, clock.now());
    expect(guard.state(clock.now()).holdAll).toBe(false);
    // Still the same event (the flips have not applied yet): no new hold.
    clock.advance(500);
    guard.observe({ pending: 30, live: 40 }, clock.now());
    expect(guard.state(clock.now()).holdAll).toBe(false);
    expect(guard.health(clock.now()).status).toBe('ok');
    // The flips applied; a later mass event is held again.
    guard.observe({ pending: 0, live: 10 }, clock.now());
    clock.advance(60_000);
    guard.observe({ pending: 12, live: 15 }, clock.now());
    expect(guard.state(clock.now()).holdAll).toBe(true);
  });

  it('keeps holding for one whole threshold while the held projects are not due', () => {
    const { clock, guard } = setup();
    guard.observe({ pending: 30, live: 40 }, clock.now());
    // The held projects wait, not due, until the hold ends: later sweeps see only newcomers.
    clock.advance(10_000);
    guard.observe({ pending: 0, live: 40 }, clock.now());
    expect(guard.state(clock.now())).toMatchObject({
      holdAll: true,
      holdUntil: new Date('2025-01-01T00:01:30.000Z'),
    });
    guard.observe({ pending: 2, live: 40 }, clock.now());
    // Pending counts what went offline within a threshold too: the largest count seen is the event's size.
    expect(guard.health(clock.now())).toMatchObject({
      status: 'degraded',
      mass_offline: { pending: 30, live: 40, until: '2025-01-01T00:01:30.000Z' },
    });
    clock.advance(OFFLINE_S * 1000 - 10_001);
    guard.observe({ pending: 0, live: 40 }, clock.now());
    expect(guard.state(clock.now()).holdAll).toBe(true);
  });

  it('lets whoever is still silent flip once the hold expires, without re-arming', () => {
    const { clock, guard } = setup();
    guard.observe({ pending: 30, live: 40 }, clock.now());
    clock.advance(10_000);
    guard.observe({ pending: 15, live: 40 }, clock.now());
    clock.advance(OFFLINE_S * 1000 - 10_000);
    guard.observe({ pending: 15, live: 40 }, clock.now());
    expect(guard.state(clock.now()).holdAll).toBe(false);
    expect(guard.health(clock.now()).status).toBe('ok');
    // The flips applied; the next mass event is held again.
    clock.advance(1_000);
    guard.observe({ pending: 0, live: 25 }, clock.now());
    guard.observe({ pending: 20, live: 25 }, clock.now());
    expect(guard.state(clock.now()).holdAll).toBe(true);
  });

  it('does not end early when nothing more is pending: whoever came back is simply not due', () => {
    const { clock, guard } = setup();
    guard.observe({ pending: 30, live: 40 }, clock.now());
    clock.advance(5_000);
    guard.observe({ pending: 0, live: 40 }, clock.now());
    expect(guard.state(clock.now()).holdAll).toBe(true);
    clock.advance(OFFLINE_S * 1000 - 5_000);
    // Expired: those still silent are due again and, released, flip.
    guard.observe({ pending: 0, live: 40 }, clock.now());
    expect(guard.state(clock.now()).holdAll).toBe(false);
    expect(guard.health(clock.now()).status).toBe('ok');
    // A new mass event later is a new hold, with its own full threshold.
    clock.advance(1_000);
    guard.observe({ pending: 25, live: 40 }, clock.now());
    clock.advance(OFFLINE_S * 1000 - 1);
    expect(guard.state(clock.now()).holdAll).toBe(true);
  });
});

describe('PresenceOfflineGuard: NATS', () => {
  it('pauses offline flips while NATS is enabled and disconnected, and says why', () => {
    const { clock, view, guard } = setup({ enabled: true, connected: true, connectedOnce: true });
    expect(guard.state(clock.now()).holdAll).toBe(false);
    expect(guard.health(clock.now()).status).toBe('ok');
    view.connected = false;
    view.since = clock.now();
    expect(guard.state(clock.now()).holdAll).toBe(true);
    const health = guard.health(clock.now());
    expect(health.status).toBe('degraded');
    expect(String(health.reason)).toMatch(/NATS disconnected/);
  });

  it('ends by itself on reconnect, counting silence only from the reconnect', () => {
    const { clock, view, guard } = setup({ enabled: true, connected: true, connectedOnce: true });
    view.connected = false;
    expect(guard.state(clock.now()).holdAll).toBe(true);
    clock.advance(300_000);
    view.connected = true;
    view.since = clock.now();
    const state = guard.state(clock.now());
    expect(state.holdAll).toBe(false);
    expect(state.heardSince).toEqual(clock.now());
  });

  it('pauses nothing while NATS has never connected since start: the grace, then the rule, a warning and a health detail', () => {
    const { clock, view, guard, warnings } = setup({ enabled: true, connected: false });
    // During the start-up grace silence does not count anyway (heardSince is the start); no pause.
    expect(guard.state(clock.now())).toEqual({ heardSince: clock.now(), holdAll: false });
    expect(guard.health(clock.now())).toMatchObject({
      status: 'ok',
      nats_pause: expect.stringContaining('start-up grace'),
    });
    expect(warnings).toEqual([]);
    clock.advance(OFFLINE_S * 1000);
    expect(guard.state(clock.now()).holdAll).toBe(false);
    clock.advance(3_600_000);
    expect(guard.state(clock.now()).holdAll).toBe(false);
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toMatch(/NATS has not connected since start/);
    expect(guard.health(clock.now())).toMatchObject({
      status: 'ok',
      nats_pause: expect.stringContaining('follow the status rule'),
    });
    // Once NATS has connected, losing it is an outage: the pause applies from then on.
    view.connected = true;
    view.connectedOnce = true;
    view.since = clock.now();
    expect(guard.health(clock.now())).not.toHaveProperty('nats_pause');
    view.connected = false;
    expect(guard.state(clock.now()).holdAll).toBe(true);
    expect(guard.health(clock.now()).status).toBe('degraded');
  });

  it('never holds when NATS is disabled', () => {
    const { clock, guard } = setup({ enabled: false, connected: false });
    expect(guard.state(clock.now())).toEqual({ heardSince: clock.now(), holdAll: false });
  });
});
