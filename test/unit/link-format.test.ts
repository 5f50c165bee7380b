/**
 * CoRE Link Format (RFC 6690): the §5 examples, §4.1 query filtering,
 * serialization, and malformed input.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  filterLinks,
  type Link,
  linkAttr,
  linkAttrValues,
  parseLinkFormat,
  serializeLinkFormat,
} from '../../src/codec/link-format.js';
import { LinkFormatError } from '../../src/errors.js';

/** RFC 6690 §5, the example with anchors and relations (line feeds removed). */
const SENSORS =
  '</sensors>;ct=40;title="Sensor Index",' +
  '</sensors/temp>;rt="temperature-c";if="sensor",' +
  '</sensors/light>;rt="light-lux";if="sensor",' +
  '<http://www.example.com/sensors/t123>;anchor="/sensors/temp";rel="describedby",' +
  '</t>;anchor="/sensors/temp";rel="alternate"';

const targets = (links: readonly Link[]) => links.map((l) => l.target);

describe('parseLinkFormat: RFC 6690 §5 examples', () => {
  it('two sensors sharing an interface', () => {
    const doc = '</sensors/temp>;if="sensor",</sensors/light>;if="sensor"';
    assert.deepEqual(parseLinkFormat(doc), [
      { target: '/sensors/temp', attributes: [['if', 'sensor']] },
      { target: '/sensors/light', attributes: [['if', 'sensor']] },
    ]);
  });

  it('the same with the line feeds shown in the RFC', () => {
    const doc = '</sensors/temp>;if="sensor",\n</sensors/light>;if="sensor"\n';
    assert.deepEqual(targets(parseLinkFormat(doc)), ['/sensors/temp', '/sensors/light']);
  });

  it('hierarchical: </sensors>;ct=40 then the sensor list', () => {
    assert.deepEqual(parseLinkFormat('</sensors>;ct=40'), [
      { target: '/sensors', attributes: [['ct', '40']] },
    ]);
    const doc = '</sensors/temp>;rt="temperature-c";if="sensor",</sensors/light>;rt="light-lux";if="sensor"';
    const links = parseLinkFormat(doc);
    assert.deepEqual(links, [
      {
        target: '/sensors/temp',
        attributes: [
          ['rt', 'temperature-c'],
          ['if', 'sensor'],
        ],
      },
      {
        target: '/sensors/light',
        attributes: [
          ['rt', 'light-lux'],
          ['if', 'sensor'],
        ],
      },
    ]);
    assert.equal(serializeLinkFormat(links), doc, 'serializes back byte-identically');
  });

  it('anchors, relations and titles', () => {
    const links = parseLinkFormat(SENSORS);
    assert.deepEqual(targets(links), [
      '/sensors',
      '/sensors/temp',
      '/sensors/light',
      'http://www.example.com/sensors/t123',
      '/t',
    ]);
    assert.equal(linkAttr(links[0]!, 'title'), 'Sensor Index');
    assert.equal(linkAttr(links[0]!, 'ct'), '40');
    assert.equal(linkAttr(links[3]!, 'anchor'), '/sensors/temp');
    assert.equal(linkAttr(links[3]!, 'rel'), 'describedby');
    assert.equal(linkAttr(links[4]!, 'rel'), 'alternate');
    assert.equal(linkAttr(links[4]!, 'rt'), undefined);
    assert.equal(serializeLinkFormat(links), SENSORS);
  });

  it('the RFC layout with a line break before ";rel"', () => {
    const doc =
      '<http://www.example.com/sensors/t123>;anchor="/sensors/temp"\n;rel="describedby",\n</t>;anchor="/sensors/temp";rel="alternate"';
    const links = parseLinkFormat(doc);
    assert.equal(links.length, 2);
    assert.equal(linkAttr(links[0]!, 'rel'), 'describedby');
  });

  it('firmware with a size attribute', () => {
    const doc = '</firmware/v2.1>;rt="firmware";sz=262144';
    const links = parseLinkFormat(doc);
    assert.equal(linkAttr(links[0]!, 'sz'), '262144');
    assert.equal(serializeLinkFormat(links), doc);
  });

  it('flags, repeated attributes, quoted escapes, empty document', () => {
    const links = parseLinkFormat('</obs>;obs;rt="a b";rt="c";title="say \\"hi\\""');
    assert.equal(linkAttr(links[0]!, 'obs'), true);
    assert.equal(linkAttr(links[0]!, 'rt'), 'a b', 'first occurrence');
    assert.deepEqual(linkAttrValues(links[0]!, 'rt'), ['a', 'b', 'c']);
    assert.equal(linkAttr(links[0]!, 'title'), 'say "hi"');
    assert.deepEqual(parseLinkFormat(''), []);
    assert.deepEqual(parseLinkFormat('  \n'), []);
  });
});

describe('filterLinks: RFC 6690 §4.1 query filtering', () => {
  const links = parseLinkFormat(
    `${SENSORS},</firmware/v2.1>;rt="firmware";sz=262144,</obs>;obs;rt="temperature-c light-lux";ct="0 50"`,
  );

  const q = (query: string | undefined) => targets(filterLinks(links, query));

  it('no query returns everything', () => {
    assert.equal(q(undefined).length, links.length);
    assert.equal(q('').length, links.length);
  });

  it('rt=light-lux (§5 example)', () => {
    assert.deepEqual(q('rt=light-lux'), ['/sensors/light', '/obs']);
  });

  it('rt=firmware (§5 example)', () => {
    assert.deepEqual(q('rt=firmware'), ['/firmware/v2.1']);
  });

  it('if=sensor', () => {
    assert.deepEqual(q('if=sensor'), ['/sensors/temp', '/sensors/light']);
  });

  it('anchor=/sensors/temp (§5 example)', () => {
    assert.deepEqual(q('anchor=/sensors/temp'), ['http://www.example.com/sensors/t123', '/t']);
  });

  it('href matches the target, with a trailing * as prefix match', () => {
    assert.deepEqual(q('href=/sensors/*'), ['/sensors/temp', '/sensors/light']);
    assert.deepEqual(q('href=/sensors*'), ['/sensors', '/sensors/temp', '/sensors/light']);
    assert.deepEqual(q('href=/t'), ['/t']);
    assert.deepEqual(q('href=/nope'), []);
  });

  it('ct=40 matches ct=40; ct=50 matches one value of a list', () => {
    assert.deepEqual(q('ct=40'), ['/sensors']);
    assert.deepEqual(q('ct=50'), ['/obs']);
    assert.deepEqual(q('ct=4'), [], 'no partial match without *');
  });

  it('trailing * on attribute values', () => {
    assert.deepEqual(q('rt=temp*'), ['/sensors/temp', '/obs']);
    assert.deepEqual(q('rt=*'), ['/sensors/temp', '/sensors/light', '/firmware/v2.1', '/obs']);
    assert.deepEqual(q('title=Sensor*'), ['/sensors']);
    assert.deepEqual(q('title=Sensor Index'), ['/sensors']);
  });

  it('an attribute without a value, and a bare attribute name', () => {
    assert.deepEqual(q('obs'), ['/obs']);
    assert.deepEqual(q('sz'), ['/firmware/v2.1']);
    assert.deepEqual(q('rel=alternate'), ['/t']);
    assert.deepEqual(q('nope=1'), []);
  });

  it('values are compared exactly (case-sensitive)', () => {
    assert.deepEqual(q('rt=Light-Lux'), []);
  });
});

describe('serializeLinkFormat', () => {
  it('quotes string values, leaves ct/sz numbers bare, escapes quotes and backslashes', () => {
    const s = serializeLinkFormat([
      {
        target: '/a',
        attributes: [
          ['ct', '40'],
          ['sz', '12'],
          ['rt', 'x'],
          ['obs', true],
          ['title', 'a "b" \\ c'],
          ['ct', '0 50'],
        ],
      },
      { target: '/b', attributes: [] },
    ]);
    assert.equal(s, '</a>;ct=40;sz=12;rt="x";obs;title="a \\"b\\" \\\\ c";ct="0 50",</b>');
    const back = parseLinkFormat(s);
    assert.equal(linkAttr(back[0]!, 'title'), 'a "b" \\ c');
    assert.equal(back.length, 2);
  });

  it('percent-encodes target characters that cannot appear between < and >', () => {
    assert.equal(
      serializeLinkFormat([{ target: '/a b/<c>\td', attributes: [['rt', 'x']] }]),
      '</a%20b/%3Cc%3E%09d>;rt="x"',
    );
    assert.equal(
      parseLinkFormat(serializeLinkFormat([{ target: '/a b', attributes: [] }]))[0]?.target,
      '/a%20b',
    );
  });

  it('refuses attribute names that could not be parsed back', () => {
    for (const name of ['', 'a b', 'a=b', 'a;b', 'a,b', 'a"b', 'x'.repeat(256)]) {
      assert.throws(
        () => serializeLinkFormat([{ target: '/a', attributes: [[name, 'v']] }]),
        LinkFormatError,
        JSON.stringify(name),
      );
    }
    assert.equal(
      serializeLinkFormat([{ target: '', attributes: [['title*', "UTF-8'en'x"]] }]),
      `<>;title*="UTF-8'en'x"`,
    );
  });

  it('empty list', () => {
    assert.equal(serializeLinkFormat([]), '');
  });
});

describe('malformed link format', () => {
  for (const bad of [
    'sensors',
    '</a',
    '</a>;',
    '</a>;;x',
    '</a>,',
    '</a>,,</b>',
    '</a> </b>',
    '</a>;rt="x',
    '</a>;=x',
    '<a b>',
    '<<a>',
    '</a>x',
    '</a>;rt="x"y',
    ',</a>',
  ]) {
    it(`rejects ${JSON.stringify(bad)}`, () => {
      assert.throws(() => parseLinkFormat(bad), LinkFormatError);
    });
  }

  it('rejects more than 10 000 links', () => {
    const doc = Array.from({ length: 10_001 }, (_, i) => `</${i}>`).join(',');
    assert.throws(() => parseLinkFormat(doc), LinkFormatError);
    assert.equal(
      parseLinkFormat(Array.from({ length: 10_000 }, (_, i) => `</${i}>`).join(',')).length,
      10_000,
    );
  });
});
