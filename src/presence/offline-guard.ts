import type { MassHold, OfflineGuard } from '../catalog/catalog-service.ts';
import type { GuardState } from '../catalog/status-rule.ts';
import type { CheckResult } from '../health.ts';

type WarnLog = { warn(obj: object, msg: string): void };

/** A mass-offline event: more than half of the live projects, and at least this many, at once. */
export const MASS_OFFLINE_MIN = 10;

export interface NatsView {
  readonly enabled: boolean;
  readonly connected: boolean;
  /** When the current connection state began. */
  readonly since: Date;
  /** Whether this instance has had a NATS connection at all since it started (absent: not yet). */
  readonly connectedOnce?: boolean;
}

type MassState =
  | { phase: 'idle' }
  | { phase: 'holding'; since: Date; pending: number; live: number }
  | { phase: 'released'; since: Date };

export type { MassHold };

/** What a sweep tells the guard: what would go offline, what is live, and the shared hold if any. */
export interface OfflineCounts {
  /** Due projects the rule would take offline now, plus those that went offline within one threshold. */
  pending: number;
  /** Live projects, plus those that went offline within one threshold. */
  live: number;
  /** The last hold any replica recorded. */
  hold?: MassHold | null;
}

/**
 * The guards against false offline (DESIGN.md), as one OfflineGuard for the catalog:
 * - start-up grace: silence from before `startedAt` was not heard, so it does not count;
 * - NATS: while NATS is enabled and disconnected after this instance had a connection, no project
 *   goes offline (self-preservation), and silence from before the last (re)connect does not count
 *   either. A NATS that never connected since start (not running, wrong NATS_URL) pauses nothing:
 *   that is a setting, not an outage to ride out, and a pause would last forever, freezing projects
 *   that beat over HTTP too. The start-up grace still covers the first offline threshold; after it,
 *   the status rule applies, a warning is logged once and health says so;
 * - mass offline: when a sweep would take more than half of the live projects (and at least
 *   MASS_OFFLINE_MIN) offline, those flips wait one more offline threshold, then apply to whichever
 *   projects are still silent. A recovery does not end the hold early (after a partition heals,
 *   projects come back over one beat interval, not in one sweep; those back by then simply are not
 *   due). It re-arms only once the pending count has dropped below the trigger.
 * Every guard ends by itself.
 */
export class PresenceOfflineGuard implements OfflineGuard {
  readonly #startedAt: Date;
  readonly #offlineAfterMs: number;
  readonly #nats: NatsView;
  readonly #log: WarnLog | undefined;
  #mass: MassState = { phase: 'idle' };
  #warnedNeverConnected = false;

  constructor(deps: { startedAt: Date; offlineAfterS: number; nats: NatsView; log?: WarnLog }) {
    this.#startedAt = deps.startedAt;
    this.#offlineAfterMs = deps.offlineAfterS * 1000;
    this.#nats = deps.nats;
    this.#log = deps.log;
  }

  /** NATS is enabled and not connected now. */
  get natsDown(): boolean {
    return this.#nats.enabled && !this.#nats.connected;
  }

  /** Offline flips are paused for NATS: it is down after this instance had a connection. */
  get natsPaused(): boolean {
    return this.natsDown && this.#nats.connectedOnce === true;
  }

  /** NATS is enabled but has not connected since start, and the start-up grace is over at `now`. */
  #neverConnectedAfterGrace(now: Date): boolean {
    return (
      this.natsDown &&
      this.#nats.connectedOnce !== true &&
      now.getTime() - this.#startedAt.getTime() >= this.#offlineAfterMs
    );
  }

  /** True while a mass-offline event is being held back at `now`. */
  massHolding(now: Date): boolean {
    return (
      this.#mass.phase === 'holding' && now.getTime() - this.#mass.since.getTime() < this.#offlineAfterMs
    );
  }

  state(now: Date): GuardState {
    let heardSince = this.#startedAt;
    if (this.#nats.enabled && this.#nats.connected && this.#nats.since > heardSince) {
      heardSince = this.#nats.since;
    }
    if (this.natsPaused) return { heardSince, holdAll: true };
    if (!this.#warnedNeverConnected && this.#neverConnectedAfterGrace(now)) {
      this.#warnedNeverConnected = true;
      this.#log?.warn(
        { nats_state_since: this.#nats.since.toISOString() },
        'NATS has not connected since start: offline flips are not paused for it; projects heard only over NATS go offline by the status rule',
      );
    }
    if (this.massHolding(now) && this.#mass.phase === 'holding') {
      return {
        heardSince,
        holdAll: true,
        holdUntil: new Date(this.#mass.since.getTime() + this.#offlineAfterMs),
      };
    }
    return { heardSince, holdAll: false };
  }

  /**
   * Called before each sweep with the projects the rule would take offline and those now live.
   * A hold another replica recorded is adopted (one event is held once, whichever replica saw it);
   * a hold a recent one already covered is not started again. Returns the hold this guard starts,
   * for the sweeper to record for the others.
   */
  observe(counts: OfflineCounts, now: Date): MassHold | undefined {
    const triggered = this.triggers(counts);
    const shared = counts.hold ?? null;
    if (shared && shared.until > now) {
      this.adopt(shared, now);
      return undefined;
    }
    // A hold that ended less than a threshold ago covered this event: its flips are applying now.
    const covered = shared !== null && now.getTime() - shared.until.getTime() < this.#offlineAfterMs;
    const m = this.#mass;
    if (m.phase === 'idle') {
      if (triggered && !covered) {
        this.#mass = { phase: 'holding', since: now, pending: counts.pending, live: counts.live };
        return {
          since: now,
          until: new Date(now.getTime() + this.#offlineAfterMs),
          pending: counts.pending,
          live: counts.live,
        };
      }
    } else if (m.phase === 'holding') {
      // Held projects wait, not due, until the hold ends (the sweeper reads only what is due), so the
      // pending count during a hold shows only newcomers: the hold lasts its whole threshold, and when
      // it ends, whoever is still silent is due again and flips.
      if (!this.massHolding(now)) {
        this.#mass = triggered ? { phase: 'released', since: now } : { phase: 'idle' };
      } else this.#mass = { ...m, pending: Math.max(m.pending, counts.pending), live: counts.live };
    } else if (!triggered) {
      this.#mass = { phase: 'idle' };
    }
    return undefined;
  }

  /** Whether these counts make a mass-offline event (more than half the live, at least MASS_OFFLINE_MIN). */
  triggers(counts: Pick<OfflineCounts, 'pending' | 'live'>): boolean {
    return counts.pending >= MASS_OFFLINE_MIN && counts.pending > counts.live / 2;
  }

  /** Takes on a hold as recorded for every replica (the one this guard started, or another's). */
  adopt(hold: MassHold, now: Date): void {
    if (hold.until <= now) {
      // Another replica's hold already covered this event and has ended: do not hold it again.
      this.#mass = { phase: 'released', since: now };
      return;
    }
    this.#mass = {
      phase: 'holding',
      since: new Date(hold.until.getTime() - this.#offlineAfterMs),
      pending: hold.pending,
      live: hold.live,
    };
  }

  health(now: Date): CheckResult {
    const reasons: string[] = [];
    const result: CheckResult = { status: 'ok' };
    if (this.natsPaused) {
      reasons.push(
        `NATS disconnected since ${this.#nats.since.toISOString()}: offline flips are paused (self-preservation)`,
      );
    } else if (this.natsDown) {
      // Not a pause, but the operator should know why projects that beat over NATS may turn offline.
      result.nats_pause = this.#neverConnectedAfterGrace(now)
        ? 'off: NATS has not connected since start; offline flips follow the status rule'
        : 'off: NATS has not connected since start; the start-up grace holds flips until it ends';
    }
    if (this.massHolding(now) && this.#mass.phase === 'holding') {
      const m = this.#mass;
      const until = new Date(m.since.getTime() + this.#offlineAfterMs);
      reasons.push(
        `${m.pending} of ${m.live} live projects went silent at once: offline flips held until ${until.toISOString()}`,
      );
      result.mass_offline = {
        pending: m.pending,
        live: m.live,
        since: m.since.toISOString(),
        until: until.toISOString(),
      };
    }
    const { heardSince } = this.state(now);
    result.heard_since = heardSince.toISOString();
    if (reasons.length > 0) {
      result.status = 'degraded';
      result.reason = reasons.join('; ');
    }
    return result;
  }
}
