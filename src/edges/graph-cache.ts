import { type SQL, sql } from 'drizzle-orm';
import type { Clock } from '../clock.ts';
import { type Database, query } from '../db/connection.ts';
import type { ProjectStatus } from '../protocol/index.ts';
import {
  type GraphGroup,
  type GroupBy,
  type GroupEdge,
  groupEdgesSql,
  groupKeySql,
  notOnlineSql,
  type StatusCounts,
} from './graph-queries.ts';

/**
 * How long the status-independent part of an overview (group sizes, edges between groups) is trusted
 * without a sign of change. Changes made through this instance's API and any change of the number of
 * projects are seen at once; a mesh namespace moved by heartbeats, or a tag or edge changed through
 * another replica, shows within this time. Statuses never wait on it.
 */
export const STRUCTURE_MAX_AGE_MS = 60_000;
/** Past this many count deltas, a read compacts them, so the version read stays a few rows. */
const VERSION_COMPACT_AT = 200;

const toList = (v: unknown): string[] => (Array.isArray(v) ? (v as string[]) : []);

/** The part of an overview statuses do not change, read once for every client. */
interface Structure {
  builtAt: number;
  epoch: number;
  projects: number;
  /** tag / namespace: the size of each group, largest first. */
  sizes: Array<{ key: string; count: number }>;
  /** tag / namespace: project-to-project edges bundled per (from group, to group), internal ones included. */
  edges: GroupEdge[];
  /** status: every edge counted per kind (all of them start online → online, see `#statusGraph`). */
  kinds: Map<string, number>;
}

/** A project counted where the status rule puts it now, when that is not online. */
interface NotOnlineRow {
  key: string;
  status: ProjectStatus;
  count: number;
}

interface StatusEdgeRow {
  from: ProjectStatus;
  to: ProjectStatus;
  kind: string;
  count: number;
}

interface Answer {
  groups: GraphGroup[];
  edges: GroupEdge[];
}

interface Versions {
  /** Changes with every committed status change and every insert or delete of projects, in any replica. */
  status: string;
  /** How many projects there are, from the stored counts (no scan). */
  projects: number;
  deltas: number;
}

/**
 * The grouped overview (`GET /api/fed/graph?group_by=…`), shared by every client of this instance and
 * costing what changed rather than what exists:
 *
 * - the status-independent structure (group sizes, bundled edges) is one scan, redone only when this
 *   instance changed the catalog, when the number of projects changed, or after STRUCTURE_MAX_AGE_MS;
 * - statuses come from the projects that are not online: stored offline or degraded through the
 *   (status, slug) index, plus the due ones with the rule applied now (the deadline queue), exactly as the
 *   catalog's status reads do, so a read never shows a stale `online`. Online counts are the rest.
 *   That part is cached too, keyed by a version of the stored counts (a row per committed status
 *   change, in whichever replica) and by the due rows' current verdicts, so a read between changes
 *   costs two small index reads.
 */
export class GroupedGraphCache {
  readonly #db: Database;
  readonly #clock: Clock;
  readonly #statusSql: (now: Date) => SQL<ProjectStatus>;
  readonly #dueIdsSql: (now: Date) => SQL;
  readonly #dueStatusSql: (now: Date) => SQL<ProjectStatus>;
  readonly #compact: () => Promise<void>;
  readonly #structures = new Map<GroupBy, Promise<Structure>>();
  readonly #answers = new Map<GroupBy, { key: string; answer: Promise<Answer> }>();
  #epoch = 0;
  /** How many times each part was computed: for tests and the metrics endpoint, not for logic. */
  readonly builds = { structure: 0, status: 0 };

  constructor(deps: {
    db: Database;
    clock: Clock;
    /** The catalog's read-time status: the guarded rule applied to a row (CatalogService.statusSql). */
    statusSql: (now: Date) => SQL<ProjectStatus>;
    /** The ids the rule may have moved since the last sweep (CatalogService.dueIdsSql). */
    dueIdsSql: (now: Date) => SQL;
    /** The status of a due row (CatalogService.dueStatusSql). */
    dueStatusSql: (now: Date) => SQL<ProjectStatus>;
    /** Sums the stored count deltas (CatalogService.compactCounts). */
    compactCounts: () => Promise<void>;
  }) {
    this.#db = deps.db;
    this.#clock = deps.clock;
    this.#statusSql = deps.statusSql;
    this.#dueIdsSql = deps.dueIdsSql;
    this.#dueStatusSql = deps.dueStatusSql;
    this.#compact = deps.compactCounts;
  }

  /** The catalog or its edges changed through this instance: the next read rebuilds the structure. */
  invalidate(): void {
    this.#epoch++;
  }

  async get(groupBy: GroupBy): Promise<Answer> {
    const now = this.#clock.now();
    const versions = await this.#versions();
    const structure = await this.#structure(groupBy, versions);
    const due = await this.#dueSignature(now);
    const key = `${structure.builtAt}|${structure.epoch}|${versions.status}|${due}`;
    const cached = this.#answers.get(groupBy);
    if (cached?.key === key) return cached.answer;
    const answer = this.#answer(groupBy, structure, versions, now);
    this.#answers.set(groupBy, { key, answer });
    answer.catch(() => {
      if (this.#answers.get(groupBy)?.answer === answer) this.#answers.delete(groupBy);
    });
    return answer;
  }

  async #versions(): Promise<Versions> {
    const [row] = await query<{ status: string; projects: number; deltas: number }>(
      this.#db,
      sql`select md5(coalesce(string_agg(id::text, ',' order by id), '')) as status,
                 coalesce(sum(online + degraded + offline), 0)::int as projects, count(*)::int as deltas
          from project_status_counts`,
    );
    const versions = row ?? { status: '', projects: 0, deltas: 0 };
    // Compacting changes the version once (one rebuild of the status part), then keeps the read small.
    if (versions.deltas > VERSION_COMPACT_AT) await this.#compact();
    return versions;
  }

  /** The due rows and what the rule makes of them now: a sweep's worth at most, from the deadline queue. */
  async #dueSignature(now: Date): Promise<string> {
    const [row] = await query<{ sig: string }>(
      this.#db,
      sql`select md5(coalesce(string_agg(id::text || ':' || st, ',' order by id), '')) as sig
          from (select id, ${this.#statusSql(now)} as st from projects where id in ${this.#dueIdsSql(now)}) d`,
    );
    return row?.sig ?? '';
  }

  async #structure(groupBy: GroupBy, versions: Versions): Promise<Structure> {
    const epoch = this.#epoch;
    const current = this.#structures.get(groupBy);
    if (current) {
      const s = await current.catch(() => undefined);
      const age = this.#clock.now().getTime() - (s?.builtAt ?? 0);
      if (s && s.epoch === epoch && s.projects === versions.projects && age < STRUCTURE_MAX_AGE_MS) return s;
      // Another read found it stale first and is rebuilding it: share that build.
      const latest = this.#structures.get(groupBy);
      if (latest && latest !== current) return latest;
    }
    return this.#rebuild(groupBy, versions, epoch);
  }

  #rebuild(groupBy: GroupBy, versions: Versions, epoch: number): Promise<Structure> {
    const building = this.#buildStructure(groupBy, versions, epoch);
    this.#structures.set(groupBy, building);
    building.catch(() => {
      if (this.#structures.get(groupBy) === building) this.#structures.delete(groupBy);
    });
    return building;
  }

  async #buildStructure(groupBy: GroupBy, versions: Versions, epoch: number): Promise<Structure> {
    this.builds.structure++;
    const builtAt = this.#clock.now().getTime();
    if (groupBy === 'status') {
      const rows = await query<{ kind: string; n: number }>(
        this.#db,
        sql`select kind, count(*)::int as n from integration_edges group by kind`,
      );
      return {
        builtAt,
        epoch,
        projects: versions.projects,
        sizes: [],
        edges: [],
        kinds: new Map(rows.map((r) => [r.kind, r.n])),
      };
    }
    // The group key of these two groupings never depends on status.
    const key = groupKeySql(groupBy, sql`status` as SQL<ProjectStatus>);
    const [sizes, edgeRows] = await Promise.all([
      query<{ key: string; count: number }>(
        this.#db,
        sql`select ${key} as key, count(*)::int as count from projects group by 1 order by 2 desc, 1`,
      ),
      query<{ from: string; to: string; count: number; kinds: unknown }>(this.#db, groupEdgesSql(key)),
    ]);
    return {
      builtAt,
      epoch,
      projects: versions.projects,
      sizes,
      edges: edgeRows.map((r) => ({ from: r.from, to: r.to, count: r.count, kinds: toList(r.kinds) })),
      kinds: new Map(),
    };
  }

  #notOnlineSql(key: SQL, now: Date): SQL {
    return notOnlineSql(key, this.#statusSql(now), this.#dueStatusSql(now), this.#dueIdsSql(now));
  }

  async #answer(groupBy: GroupBy, structure: Structure, versions: Versions, now: Date): Promise<Answer> {
    this.builds.status++;
    if (groupBy === 'status') return this.#statusGraph(structure, versions, now);
    const key = groupKeySql(groupBy, sql`status` as SQL<ProjectStatus>);
    const rows = await query<NotOnlineRow>(
      this.#db,
      sql`select key, st as status, count(*)::int as count from (${this.#notOnlineSql(key, now)}) n group by 1, 2`,
    );
    const notOnline = new Map<string, StatusCounts>();
    for (const r of rows) {
      const c = notOnline.get(r.key) ?? { online: 0, degraded: 0, offline: 0 };
      c[r.status] += r.count;
      notOnline.set(r.key, c);
    }
    const internal = new Map<string, number>();
    const edges: GroupEdge[] = [];
    for (const e of structure.edges) {
      if (e.from === e.to) internal.set(e.from, e.count);
      else edges.push(e);
    }
    const groups: GraphGroup[] = structure.sizes.map(({ key, count }) => {
      const c = notOnline.get(key) ?? { online: 0, degraded: 0, offline: 0 };
      // A project that moved group since the structure was read is still counted where the rule
      // and its row put it now; the online share never goes below zero for it.
      const offline = Math.min(count, c.offline);
      const degraded = Math.min(count - offline, c.degraded);
      return {
        key,
        count,
        statusCounts: { online: count - offline - degraded, degraded, offline },
        internalEdges: internal.get(key) ?? 0,
      };
    });
    return { groups, edges };
  }

  /**
   * Grouped by status: every edge starts online → online; the edges of projects that are not online
   * (read through the edge indexes from those projects only) are moved to their statuses' groups.
   */
  async #statusGraph(structure: Structure, versions: Versions, now: Date): Promise<Answer> {
    const notOnline = this.#notOnlineSql(sql`''`, now);
    const [counts, edgeRows] = await Promise.all([
      query<{ status: ProjectStatus; count: number }>(
        this.#db,
        sql`select st as status, count(*)::int as count from (${notOnline}) n group by 1`,
      ),
      query<StatusEdgeRow>(
        this.#db,
        sql`with n as materialized (${notOnline}),
            touched as (
              select e.id, e.kind, e.from_project_id as f, e.to_project_id as t
              from integration_edges e join n on n.id = e.from_project_id
              union
              select e.id, e.kind, e.from_project_id, e.to_project_id
              from integration_edges e join n on n.id = e.to_project_id
            )
            select coalesce(nf.st, 'online') as "from", coalesce(nt.st, 'online') as "to", x.kind,
                   count(*)::int as count
            from touched x left join n nf on nf.id = x.f left join n nt on nt.id = x.t
            group by 1, 2, 3`,
      ),
    ]);
    const c: StatusCounts = { online: 0, degraded: 0, offline: 0 };
    for (const r of counts) c[r.status] += r.count;
    c.online = Math.max(0, versions.projects - c.offline - c.degraded);
    const pairs = new Map<
      string,
      { from: ProjectStatus; to: ProjectStatus; count: number; kinds: Set<string> }
    >();
    const onlineKinds = new Map(structure.kinds);
    const add = (from: ProjectStatus, to: ProjectStatus, kind: string, n: number) => {
      if (n <= 0) return;
      const k = `${from}>${to}`;
      const p = pairs.get(k) ?? { from, to, count: 0, kinds: new Set<string>() };
      p.count += n;
      p.kinds.add(kind);
      pairs.set(k, p);
    };
    for (const r of edgeRows) {
      onlineKinds.set(r.kind, (onlineKinds.get(r.kind) ?? 0) - r.count);
      add(r.from, r.to, r.kind, r.count);
    }
    for (const [kind, n] of onlineKinds) add('online', 'online', kind, n);
    const internal = new Map<string, number>();
    const edges: GroupEdge[] = [];
    for (const p of [...pairs.values()].sort((a, b) =>
      a.from === b.from ? (a.to < b.to ? -1 : 1) : a.from < b.from ? -1 : 1,
    )) {
      if (p.from === p.to) internal.set(p.from, p.count);
      else edges.push({ from: p.from, to: p.to, count: p.count, kinds: [...p.kinds].sort() });
    }
    const groups: GraphGroup[] = (['online', 'degraded', 'offline'] as const)
      .filter((s) => c[s] > 0)
      .map((s) => ({
        key: s,
        count: c[s],
        statusCounts: { online: 0, degraded: 0, offline: 0, [s]: c[s] },
        internalEdges: internal.get(s) ?? 0,
      }))
      .sort((a, b) => b.count - a.count || (a.key < b.key ? -1 : 1));
    const known = new Set(groups.map((g) => g.key));
    return { groups, edges: edges.filter((e) => known.has(e.from) && known.has(e.to)) };
  }
}
