// What a project backend embeds: publishers and responders for the Federation Service. Imports only src/protocol and @nats-io.

export * from './action-responder.ts';
export * from './connection.ts';
export * from './heartbeat.ts';
export * from './metrics.ts';
