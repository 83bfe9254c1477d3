export type CheckStatus = 'ok' | 'degraded' | 'down';
export interface CheckResult {
  status: CheckStatus;
  [detail: string]: unknown;
}
export type HealthCheck = () => CheckResult | Promise<CheckResult>;

/** Named checks that features register; `GET /api/fed/health` runs them all. */
export class HealthChecks {
  readonly #checks = new Map<string, HealthCheck>();

  register(name: string, check: HealthCheck): void {
    if (this.#checks.has(name)) throw new Error(`health check ${name} registered twice`);
    this.#checks.set(name, check);
  }

  async run(): Promise<{ status: 'ok' | 'degraded'; checks: Record<string, CheckResult> }> {
    const checks: Record<string, CheckResult> = {};
    let status: 'ok' | 'degraded' = 'ok';
    await Promise.all(
      [...this.#checks].map(async ([name, check]) => {
        try {
          checks[name] = await check();
        } catch (err) {
          checks[name] = { status: 'down', error: (err as Error).message };
        }
        if (checks[name]?.status !== 'ok') status = 'degraded';
      }),
    );
    return { status, checks };
  }
}
