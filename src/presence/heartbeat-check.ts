import { Compile } from 'typebox/compile';
import {
  findUnstorableText,
  type Heartbeat,
  HeartbeatSchema,
  MAX_HEARTBEAT_BYTES,
  unstorableTextMessage,
} from '../protocol/index.ts';

/** Why a heartbeat was dropped; the label of federation_heartbeats_rejected_total. */
export type RejectReason =
  | 'oversize'
  | 'not_json'
  | 'invalid'
  | 'subject_mismatch'
  | 'unknown_project'
  | 'buffer_full';

export const REJECT_REASONS: readonly RejectReason[] = [
  'oversize',
  'not_json',
  'invalid',
  'subject_mismatch',
  'unknown_project',
  'buffer_full',
];

export type HeartbeatCheck =
  | { ok: true; heartbeat: Heartbeat }
  | { ok: false; reason: RejectReason; message: string; details?: unknown };

const validator = Compile(HeartbeatSchema);
const decoder = new TextDecoder('utf-8', { fatal: true });

/**
 * Validates a parsed heartbeat body against the wire schema (for HTTP, where the body is already JSON),
 * and refuses text the database cannot store: the schema allows it, but the batched write would fail
 * on it, and with it every heartbeat after.
 */
export function checkHeartbeatValue(value: unknown): HeartbeatCheck {
  return checkValue(value, true);
}

function checkValue(value: unknown, mayHoldUnstorableText: boolean): HeartbeatCheck {
  if (validator.Check(value)) {
    const field = mayHoldUnstorableText ? findUnstorableText(value) : undefined;
    if (field === undefined) return { ok: true, heartbeat: value };
    const message = unstorableTextMessage(field);
    return {
      ok: false,
      reason: 'invalid',
      message: `invalid heartbeat: ${message}`,
      details: [{ field, message }],
    };
  }
  const errors = validator.Errors(value).slice(0, 5);
  const first = errors[0];
  const field = first ? first.instancePath.replace(/^\//, '').replaceAll('/', '.') : '';
  return {
    ok: false,
    reason: 'invalid',
    message: `invalid heartbeat: ${field ? `${field} ` : ''}${first?.message ?? 'does not match the schema'}`,
    details: errors.map((e) => ({
      field: e.instancePath.replace(/^\//, '').replaceAll('/', '.'),
      message: e.message,
    })),
  };
}

/**
 * Checks one NATS heartbeat: size, JSON, schema, and that the subject names the same project as the
 * payload (a project may only speak for itself).
 */
export function checkHeartbeatMessage(subjectSlug: string, data: Uint8Array): HeartbeatCheck {
  if (data.byteLength > MAX_HEARTBEAT_BYTES) {
    return {
      ok: false,
      reason: 'oversize',
      message: `heartbeat of ${data.byteLength} bytes exceeds ${MAX_HEARTBEAT_BYTES}`,
    };
  }
  let text: string;
  let value: unknown;
  try {
    text = decoder.decode(data);
    value = JSON.parse(text);
  } catch {
    return { ok: false, reason: 'not_json', message: 'heartbeat is not JSON' };
  }
  // Valid JSON in valid UTF-8 can carry NUL or a lone surrogate only as a \u escape: one scan of the
  // text spares nearly every message the walk over its fields.
  const checked = checkValue(value, text.includes('\\u'));
  if (!checked.ok) return checked;
  if (checked.heartbeat.project_slug !== subjectSlug) {
    return {
      ok: false,
      reason: 'subject_mismatch',
      message: `heartbeat for ${checked.heartbeat.project_slug} was published on the subject of ${subjectSlug}`,
    };
  }
  return checked;
}
