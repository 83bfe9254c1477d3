import { describe, expect, it } from 'vitest';
import { ConfigError } from '../errors.ts';
import { parseProjectsFile } from './projects-file.ts';

const ok = `
projects:
  - slug: commandcenter
    name: CommandCenter
    hub_url: http://localhost:8000
    mesh_namespace: hub.commandcenter
    tags: [python]
    allow_fanout: [audit]
  - slug: veria
    name: Veria
    hub_url: https://veria.example
edges:
  - from: veria
    to: commandcenter
    kind: api
    strength: 0.8
`;

describe('parseProjectsFile', () => {
  it('reads the seed format plus allow_fanout and edges, with defaults', () => {
    const f = parseProjectsFile(ok, 'p.yaml');
    expect(f.projects).toHaveLength(2);
    expect(f.projects[0]).toMatchObject({ slug: 'commandcenter', allow_fanout: ['audit'], tags: ['python'] });
    expect(f.projects[1]).toMatchObject({
      slug: 'veria',
      mesh_namespace: 'hub.veria',
      tags: [],
      allow_fanout: [],
    });
    expect(f.edges).toEqual([{ from: 'veria', to: 'commandcenter', kind: 'api', strength: 0.8 }]);
  });

  it('reads notifications:, naming each by its name or its URL', () => {
    const f = parseProjectsFile(
      `${ok}notifications:
  - name: ops
    url: https://ops.example.com/hook
    secret: s3cret-s3cret-s3cret
    filters: { to: [offline], tags: [python], include_planned: true }
  - url: https://hooks.slack.com/services/T/B/X
    format: slack
`,
      'p.yaml',
    );
    expect(f.notifications).toEqual([
      {
        name: 'ops',
        url: 'https://ops.example.com/hook',
        secret: 's3cret-s3cret-s3cret',
        filters: { to: ['offline'], tags: ['python'], include_planned: true },
      },
      {
        name: 'https://hooks.slack.com/services/T/B/X',
        url: 'https://hooks.slack.com/services/T/B/X',
        format: 'slack',
      },
    ]);
  });

  it('accepts an empty file and an empty list', () => {
    expect(parseProjectsFile('', 'p.yaml').projects).toEqual([]);
    expect(parseProjectsFile('projects:\n', 'p.yaml').projects).toEqual([]);
  });

  const bad: Array<[string, string, RegExp]> = [
    [
      'a bad hub_url',
      ok.replace('https://veria.example', 'veria.example'),
      /^p\.yaml: projects\[1\] \(slug veria\) field hub_url: must match/,
    ],
    [
      'a bad slug',
      ok.replace('slug: veria', 'slug: Veria'),
      /^p\.yaml: projects\[1\] \(slug Veria\) field slug:/,
    ],
    ['a missing name', ok.replace('    name: Veria\n', ''), /^p\.yaml: projects\[1\] \(slug veria\): .*name/],
    ['an unknown field', ok.replace('    name: Veria\n', '    name: Veria\n    colour: red\n'), /colour/],
    [
      'a duplicate slug',
      ok.replace('slug: veria', 'slug: commandcenter'),
      /projects\[1\] \(slug commandcenter\): slug listed twice/,
    ],
    [
      'an edge to an unlisted project',
      ok.replace('to: commandcenter', 'to: ghost'),
      /edges\[0\] field to: project ghost/,
    ],
    [
      'an edge of an unknown kind',
      ok.replace('kind: api', 'kind: telepathy'),
      /edges\[0\] \(veria -> commandcenter\) field kind/,
    ],
    ['a strength above 1', ok.replace('strength: 0.8', 'strength: 3'), /edges\[0\].*field strength/],
    ['not YAML', 'projects: [', /^p\.yaml: not valid YAML/],
    [
      'a notifier with a bad format',
      `${ok}notifications:\n  - name: ops\n    url: https://ops.example.com\n    format: xml\n`,
      /^p\.yaml: notifications\[0\] \(name ops\) field format/,
    ],
    [
      'a notifier that is not http',
      `${ok}notifications:\n  - name: ops\n    url: ftp://ops.example.com\n`,
      /^p\.yaml: notifications\[0\] \(name ops\) field url/,
    ],
    [
      'two notifiers with one name',
      `${ok}notifications:\n  - url: https://a.example\n  - url: https://a.example\n`,
      /notifications\[1\] field name: .* listed twice/,
    ],
    ['a list at the top', '- a\n- b\n', /^p\.yaml: expected a mapping/],
    [
      'a NUL in a name',
      ok.replace('name: Veria', 'name: "Ve\\0ria"'),
      /^p\.yaml: projects\.1\.name contains text that cannot be stored/,
    ],
  ];
  it.each(bad)('refuses %s, naming the file, the entry and the field', (_label, text, message) => {
    expect(() => parseProjectsFile(text, 'p.yaml')).toThrow(ConfigError);
    expect(() => parseProjectsFile(text, 'p.yaml')).toThrow(message);
  });
});
