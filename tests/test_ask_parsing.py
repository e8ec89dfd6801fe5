"""Definitions of JavaScript, TypeScript and Go files: names with their class, lines, doc comments."""

from app.ask.chunking import chunk_file
from app.ask.parsing import language_of, parse

JS = """/**
 * Module doc.
 */

'use strict';

/**
 * Send a response.
 *
 * @param {string} body
 * @public
 */

res.send = function send(body) {
  return body;
};

// Helpers.
function helper(a) {
  return a;
}

const arrow = (x) => x * 2;

Router.prototype.handle = function (req) {};

class Command extends EventEmitter {
  /** Define a command. */
  command(name) {
    return name;
  }

  static create = () => new Command();
}
"""


def _flat(definitions, out=None):
    out = [] if out is None else out
    for d in definitions:
        out.append((d.name, d.kind, d.start + 1, d.end, d.doc))
        _flat(d.children, out)
    return out


def test_javascript_definitions() -> None:
    parsed = parse("lib/response.js", JS)
    assert parsed.module_doc == "Module doc."
    assert _flat(parsed.definitions) == [
        ("res.send", "function", 7, 16, "Send a response.\n\n{string} body"),
        ("helper", "function", 18, 21, "Helpers."),
        ("arrow", "function", 23, 23, ""),
        ("Router.handle", "function", 25, 25, ""),
        ("Command", "class", 27, 34, ""),
        ("Command.command", "function", 28, 31, "Define a command."),
        ("Command.create", "function", 33, 33, ""),
    ]


def test_typescript_definitions() -> None:
    source = (
        "export interface Options {\n"
        "  /** How long to wait. */\n"
        "  timeout(ms: number): void;\n"
        "}\n\n"
        "/** Parse a range. */\n"
        "export function parseRange(text: string): Range {\n"
        "  return new Range(text);\n"
        "}\n\n"
        "export default class Range {\n"
        "  private test(version: string): boolean {\n"
        "    return true;\n"
        "  }\n"
        "}\n"
    )
    assert _flat(parse("src/range.ts", source).definitions) == [
        ("Options", "class", 1, 4, ""),
        ("Options.timeout", "function", 2, 3, "How long to wait."),
        ("parseRange", "function", 6, 9, "Parse a range."),
        ("Range", "class", 11, 15, ""),
        ("Range.test", "function", 12, 14, ""),
    ]


OBJECTS = """'use strict'

module.exports = {
  /**
   * Return the request header.
   */
  get header () {
    return this.req.headers
  },

  is (type) {
    return typeis(this.req, type)
  },

  toJSON: function () {
    return 1
  },

  'content-type': () => 'text/plain',
  settings: { depth: 5 },
  formats: {
    RFC1738: function (value) {
      return value
    }
  }
}

const defaults = { depth: 5, delimiter: '&' }

const proto = module.exports = {
  throw (status) {
    throw new Error(status)
  }
}
"""


def test_object_literal_methods_are_definitions() -> None:
    # Modules written as one exported object (koa, qs) have methods too, not only classes and functions;
    # an object without methods (settings) stays plain code.
    assert _flat(parse("lib/request.js", OBJECTS).definitions) == [
        ("header", "function", 4, 9, "Return the request header."),
        ("is", "function", 11, 13, ""),
        ("toJSON", "function", 15, 17, ""),
        ("content-type", "function", 19, 19, ""),
        ("formats", "class", 21, 25, ""),
        ("formats.RFC1738", "function", 22, 24, ""),
        ("proto", "class", 30, 34, ""),
        ("proto.throw", "function", 31, 33, ""),
    ]
    symbols = [chunk.symbol for chunk in chunk_file("lib/request.js", OBJECTS)]
    assert "header" in symbols and "proto.throw" in symbols and "defaults" not in symbols


GO = """// Package cobra is a commander.
package cobra

// Command is just that, a command.
type Command struct {
	Use string
}

// Find the target command.
// It walks the tree.
func (c *Command) Find(args []string) (*Command, error) {
	return c, nil
}

func (s *Set[T]) Add(v T) {}

type (
	// A is one.
	A int
	B string
)

// ExactArgs returns an error if there are not exactly n args.
func ExactArgs(n int) PositionalArgs {
	return nil
}
"""


def test_go_definitions() -> None:
    parsed = parse("command.go", GO)
    assert parsed.module_doc == "Package cobra is a commander."
    assert _flat(parsed.definitions) == [
        ("Command", "class", 4, 7, "Command is just that, a command."),
        ("Command.Find", "function", 9, 13, "Find the target command.\nIt walks the tree."),
        ("Set.Add", "function", 15, 15, ""),
        ("A", "class", 18, 19, "A is one."),
        ("B", "class", 20, 20, ""),
        ("ExactArgs", "function", 23, 26, "ExactArgs returns an error if there are not exactly n args."),
    ]


def test_chunks_of_other_languages_carry_names_and_docs() -> None:
    chunks = chunk_file("command.go", GO)
    find = next(c for c in chunks if c.symbol == "Command.Find")
    assert (find.start_line, find.end_line, find.doc) == (9, 13, "Find the target command. It walks the tree.")
    assert find.text.startswith("// Find the target command.\n")
    # Code outside definitions (the package clause) is still indexed, labelled by the file's doc.
    assert (chunks[0].start_line, chunks[0].symbol, chunks[0].doc) == (1, None, "Package cobra is a commander.")


def test_languages_and_unparsable_input() -> None:
    assert [language_of(p) for p in ("a.py", "b.mjs", "c.tsx", "d.go", "e.rb", "Makefile")] == [
        "python", "javascript", "tsx", "go", None, None,
    ]  # fmt: skip
    assert parse("notes.txt", "function x() {}") is None
    # tree-sitter recovers from syntax errors: what parses is still found.
    assert [d.name for d in parse("broken.js", "function ok() {}\nfunction (\n").definitions] == ["ok"]
