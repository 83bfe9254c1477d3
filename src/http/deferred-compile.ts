import SerializerSelector from '@fastify/fast-json-stringify-compiler';
import type { FastifySchemaCompiler } from 'fastify';
import { validatorCompiler } from './validation.ts';

type Validate = ReturnType<FastifySchemaCompiler<object>>;
type Serialize = SerializerSelector.Serializer;

/**
 * Fastify compiles every route's validators (ajv) and response serializers (fast-json-stringify)
 * while the app starts: with this service's ~40 routes that was about a third of the time between
 * `npm start` and the first answer. These compilers hand Fastify a function that compiles its
 * schema the first time a request needs it, and `warmUp()` (run once the app is ready) compiles the
 * rest in the background, one schema per turn of the event loop so requests are never held behind
 * the whole batch. The compiled functions are the same ones Fastify would have built.
 */
export class DeferredCompilers {
  /** Each schema not compiled yet, with the route it belongs to (for the log if it fails). */
  readonly #pending = new Map<() => void, string>();
  #warming = false;

  /** Schemas registered but not compiled yet (for tests). */
  get pending(): number {
    return this.#pending.size;
  }

  readonly validatorCompiler: FastifySchemaCompiler<object> = (route) => {
    let compiled: Validate | undefined;
    const compile = (): Validate => {
      compiled ??= validatorCompiler(route) as Validate;
      this.#pending.delete(compile);
      return compiled;
    };
    this.#pending.set(compile, `${route.method} ${route.url} ${route.httpPart ?? ''}`.trim());
    const validate: Validate = (data: unknown) => {
      const v = compiled ?? compile();
      const ok = v(data);
      // Fastify reads the errors of a failed validation from the function it was given.
      validate.errors = v.errors;
      return ok;
    };
    return validate;
  };

  /** For `schemaController.compilersFactory.buildSerializer`: Fastify's own builder, deferred. */
  readonly buildSerializer: SerializerSelector.SerializerFactory = (externalSchemas, options) => {
    const build = SerializerSelector()(externalSchemas, options);
    return (route) => {
      let compiled: Serialize | undefined;
      const compile = (): Serialize => {
        compiled ??= build(route);
        this.#pending.delete(compile);
        return compiled;
      };
      this.#pending.set(compile, `${route.method} ${route.url} response ${route.httpStatus}`);
      return (data: unknown) => (compiled ?? compile())(data);
    };
  };

  /**
   * Compiles whatever no request has needed yet, one schema per event-loop turn, and resolves with
   * the schemas that failed to compile (a request that needs one gets a 500, as Fastify would answer
   * any handler error; the caller logs them so the fault is seen at start, not at the first call).
   */
  warmUp(): Promise<Array<{ route: string; error: unknown }>> {
    if (this.#warming) return Promise.resolve([]);
    this.#warming = true;
    const failures: Array<{ route: string; error: unknown }> = [];
    return new Promise((resolve) => {
      const next = () => {
        const first = this.#pending.entries().next();
        if (first.done) {
          resolve(failures);
          return;
        }
        const [compile, route] = first.value;
        try {
          compile();
        } catch (error) {
          this.#pending.delete(compile);
          failures.push({ route, error });
        }
        setImmediate(next);
      };
      setImmediate(next);
    });
  }
}
