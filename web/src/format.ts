import { type MetricEntry, metricValue } from './api.ts';

/** "12s", "4m", "3h", "2d": short enough for a card. */
export function formatAge(seconds: number): string {
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m`;
  if (s < 86400) return `${Math.floor(s / 3600)}h`;
  return `${Math.floor(s / 86400)}d`;
}

export function formatValue(value: number | string): string {
  if (typeof value === 'string') return value;
  if (Number.isInteger(value)) return value.toLocaleString('en');
  return value.toLocaleString('en', { maximumFractionDigits: 2 });
}

// One formatter for every call: toLocaleString with options builds a new one each time (~0.1 ms).
const TIME_FORMAT = new Intl.DateTimeFormat('en-GB', {
  year: 'numeric',
  month: '2-digit',
  day: '2-digit',
  hour: '2-digit',
  minute: '2-digit',
  second: '2-digit',
  hour12: false,
});

export function formatTime(iso: string | null | undefined): string {
  if (!iso) return '—';
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? iso : TIME_FORMAT.format(d);
}

/** Metrics an operator looks at first (names from the seed), then the rest alphabetically. */
const KEY_METRICS = ['audit.ok_count', 'coverage.percent', 'audit.error_count', 'graph.nodes', 'graph.edges'];

export function keyMetrics(
  metrics: Record<string, MetricEntry> | null | undefined,
  count: number,
): Array<[string, string]> {
  if (!metrics) return [];
  const names = Object.keys(metrics).sort((a, b) => {
    const ia = KEY_METRICS.indexOf(a);
    const ib = KEY_METRICS.indexOf(b);
    if (ia !== ib) return (ia === -1 ? KEY_METRICS.length : ia) - (ib === -1 ? KEY_METRICS.length : ib);
    return a.localeCompare(b);
  });
  return names.slice(0, count).map((name) => {
    const entry = metrics[name] as MetricEntry;
    return [name, formatValue(metricValue(entry).value)];
  });
}
