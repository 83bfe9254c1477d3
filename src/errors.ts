/** Domain errors thrown by services; one error handler maps them to HTTP status codes. */
export class DomainError extends Error {
  readonly statusCode: number;
  readonly code: string;
  readonly details?: unknown;
  constructor(statusCode: number, code: string, message: string, details?: unknown, options?: ErrorOptions) {
    super(message, options);
    this.name = new.target.name;
    this.statusCode = statusCode;
    this.code = code;
    this.details = details;
  }
}

export class InputError extends DomainError {
  constructor(message: string, details?: unknown) {
    super(400, 'bad_request', message, details);
  }
}

export class NotFoundError extends DomainError {
  constructor(message: string, details?: unknown) {
    super(404, 'not_found', message, details);
  }
}

export class ConflictError extends DomainError {
  constructor(message: string, details?: unknown) {
    super(409, 'conflict', message, details);
  }
}

export class UnavailableError extends DomainError {
  constructor(message: string, options?: ErrorOptions) {
    super(503, 'unavailable', message, undefined, options);
  }
}

/** A configuration problem found at start-up: the message is one line naming the variable or entry. */
export class ConfigError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = 'ConfigError';
  }
}

/** An error and the `cause`s it wraps (drizzle and pg wrap them), at most `depth` deep. */
export function* causes(err: unknown, depth = 5): Generator<unknown> {
  for (let e: unknown = err, d = 0; e && d < depth; e = (e as { cause?: unknown }).cause, d++) yield e;
}
