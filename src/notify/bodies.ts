import type { Transition } from '../catalog/catalog-service.ts';
import type { ProjectStatus } from '../protocol/index.ts';

export type NotificationEvent = 'transition' | 'flapping' | 'stable' | 'maintenance_ended';
export type NotifierFormat = 'json' | 'slack';

/** The project as a notification shows it. */
export interface NotifiedProject {
  slug: string;
  name: string;
  hub_url: string;
  mesh_namespace: string;
  tags: string[];
}

/** What one notification says, before it is put in a notifier's format. */
export type Notification =
  | { event: 'transition'; transition: Transition; project: NotifiedProject }
  | {
      event: 'flapping';
      at: Date;
      status: ProjectStatus;
      changes: number;
      windowS: number;
      project: NotifiedProject;
    }
  | { event: 'stable'; at: Date; status: ProjectStatus; project: NotifiedProject }
  /** A window ended with the project not online: what its silenced transitions left it in. */
  | {
      event: 'maintenance_ended';
      at: Date;
      status: ProjectStatus;
      reason: string | null;
      project: NotifiedProject;
    };

const STATUS_EMOJI: Record<ProjectStatus, string> = {
  online: ':large_green_circle:',
  degraded: ':large_yellow_circle:',
  offline: ':red_circle:',
};

/** The JSON body: the transition (or flap change) with the project; `id` is the delivery's id. */
export function jsonBody(id: string, n: Notification): Record<string, unknown> {
  if (n.event === 'transition') {
    const t = n.transition;
    return {
      id,
      event: 'transition',
      slug: t.slug,
      from: t.from,
      to: t.to,
      at: t.at.toISOString(),
      reason: t.reason,
      project: n.project,
    };
  }
  if (n.event === 'flapping') {
    return {
      id,
      event: 'flapping',
      slug: n.project.slug,
      at: n.at.toISOString(),
      status: n.status,
      changes: n.changes,
      window_s: n.windowS,
      project: n.project,
    };
  }
  if (n.event === 'maintenance_ended') {
    return {
      id,
      event: 'maintenance_ended',
      slug: n.project.slug,
      at: n.at.toISOString(),
      status: n.status,
      maintenance_reason: n.reason,
      project: n.project,
    };
  }
  return {
    id,
    event: 'stable',
    slug: n.project.slug,
    at: n.at.toISOString(),
    status: n.status,
    project: n.project,
  };
}

/** A Slack-compatible incoming-webhook body: one `text` line (Mattermost, Rocket.Chat and Teams' Slack mode read it too). */
export function slackText(n: Notification): string {
  const who =
    n.project.name === n.project.slug ? `*${n.project.slug}*` : `*${n.project.name}* (${n.project.slug})`;
  if (n.event === 'transition') {
    const t = n.transition;
    return `${STATUS_EMOJI[t.to]} ${who} is ${t.to} (was ${t.from}): ${t.reason} — ${t.at.toISOString()}`;
  }
  if (n.event === 'flapping') {
    return `:warning: ${who} is flapping: ${n.changes} status changes in ${n.windowS} s, now ${n.status}; further changes are not notified until it is stable — ${n.at.toISOString()}`;
  }
  if (n.event === 'maintenance_ended') {
    return `${STATUS_EMOJI[n.status]} ${who} is ${n.status} as its maintenance window ends${n.reason ? ` (${n.reason})` : ''} — ${n.at.toISOString()}`;
  }
  return `${STATUS_EMOJI[n.status]} ${who} is stable again, ${n.status} — ${n.at.toISOString()}`;
}

/** The exact bytes a delivery sends (and signs), fixed when it is written. */
export function renderBody(format: NotifierFormat, id: string, n: Notification): string {
  return JSON.stringify(format === 'slack' ? { text: slackText(n) } : jsonBody(id, n));
}
