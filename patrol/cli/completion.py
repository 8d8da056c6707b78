"""``patrol completion bash|zsh|fish``: a script completing commands, options and ids.

Commands and options come from the parser itself, so the scripts never fall behind it.
Ids are asked from the running Patrol at completion time by ``patrol _ids`` (hidden):
quickly (a short deadline), and silently (nothing at all when it is not there). The
address and token options already typed on the line are passed on.
"""

from __future__ import annotations

import argparse
import sys


from patrol.cli.address import EXIT_OK, ClientError, base_url, token_of
from patrol.cli.remote import Client
from patrol.cli.targets import all_items

#: commands whose arguments are ids, and those whose argument is a file
ID_COMMANDS = ("status", "enable", "start", "disable", "stop", "restart", "run-once", "history", "logs", "ping")
FILE_COMMANDS = ("run", "check")
IDS_TIMEOUT = 1.0
PASSED = ("--url", "--config", "--token-file")


def commands(parser: argparse.ArgumentParser) -> dict[str, list[str]]:
    """Each visible command and its long and short options."""
    found: dict[str, list[str]] = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                if not name.startswith("_"):
                    found[name] = sorted({o for a in sub._actions for o in a.option_strings})
    return found


def cmd_completion(parser: argparse.ArgumentParser, shell: str) -> int:
    table = commands(parser)
    print({"bash": bash, "zsh": zsh, "fish": fish}[shell](table))
    return EXIT_OK


def cmd_ids(args: argparse.Namespace) -> int:
    """Every app, service and set id, one a line; nothing (and exit 0) on any failure."""
    try:
        client = Client(base_url(args.url, args.config), IDS_TIMEOUT, token_of(args))
        items = all_items(client.status())
    except (ClientError, OSError, ValueError):
        return EXIT_OK
    ids = {t.id for t in items} | {str(t.entry["instance-of"]) for t in items if t.entry.get("instance-of")}
    sys.stdout.write("".join(f"{i}\n" for i in sorted(ids)))
    return EXIT_OK


def _passed_bash() -> str:
    return " | ".join(PASSED)


def bash(table: dict[str, list[str]]) -> str:
    cases = "\n".join(f'        {name}) opts="{" ".join(opts)}" ;;' for name, opts in table.items())
    return f'''# patrol completion for bash: eval "$(patrol completion bash)"
_patrol_ids() {{
    local i passed=()
    for ((i = 2; i < COMP_CWORD; i++)); do
        case "${{COMP_WORDS[i]}}" in
            {_passed_bash()}) passed+=("${{COMP_WORDS[i]}}" "${{COMP_WORDS[i+1]}}") ;;
        esac
    done
    command patrol _ids "${{passed[@]}}" 2>/dev/null
}}
_patrol() {{
    local cur="${{COMP_WORDS[COMP_CWORD]}}" prev="${{COMP_WORDS[COMP_CWORD-1]}}" opts=""
    if [ "$COMP_CWORD" -eq 1 ]; then
        COMPREPLY=($(compgen -W "{" ".join(table)} --help --version" -- "$cur"))
        return
    fi
    local cmd="${{COMP_WORDS[1]}}"
    case "$cmd" in
{cases}
    esac
    case "$prev" in
        --config|--token-file) COMPREPLY=($(compgen -f -- "$cur")); return ;;
        --url|--token|--secret|--timeout|-n|--lines|--since|--watch) return ;;
    esac
    if [[ "$cur" == -* ]]; then
        COMPREPLY=($(compgen -W "$opts" -- "$cur"))
        return
    fi
    case "$cmd" in
        {"|".join(ID_COMMANDS)}) COMPREPLY=($(compgen -W "$(_patrol_ids) all" -- "$cur")) ;;
        {"|".join(FILE_COMMANDS)}) COMPREPLY=($(compgen -f -- "$cur")) ;;
        completion) COMPREPLY=($(compgen -W "bash zsh fish" -- "$cur")) ;;
    esac
}}
complete -F _patrol patrol'''


def zsh(table: dict[str, list[str]]) -> str:
    cases = "\n".join(f"    {name}) opts=({' '.join(opts)}) ;;" for name, opts in table.items())
    return f'''#compdef patrol
# patrol completion for zsh: eval "$(patrol completion zsh)"
_patrol() {{
  local -a opts ids passed
  local i
  if (( CURRENT == 2 )); then
    compadd -- {" ".join(table)}
    return
  fi
  case $words[2] in
{cases}
  esac
  if [[ $PREFIX == -* ]]; then
    compadd -- $opts
    return
  fi
  for ((i = 3; i < CURRENT; i++)); do
    case $words[i] in
      {_passed_bash()}) passed+=($words[i] $words[i+1]) ;;
    esac
  done
  case $words[2] in
    {"|".join(ID_COMMANDS)}) ids=(${{(f)"$(command patrol _ids $passed 2>/dev/null)"}}); compadd -- $ids all ;;
    {"|".join(FILE_COMMANDS)}) _files ;;
    completion) compadd -- bash zsh fish ;;
  esac
}}
compdef _patrol patrol'''


def fish(table: dict[str, list[str]]) -> str:
    lines = ["# patrol completion for fish: patrol completion fish | source", "complete -c patrol -f",
             f"complete -c patrol -n __fish_use_subcommand -a '{' '.join(table)}'",
             f"complete -c patrol -n '__fish_seen_subcommand_from {' '.join(ID_COMMANDS)}' "
             "-a '(command patrol _ids 2>/dev/null) all'",
             f"complete -c patrol -n '__fish_seen_subcommand_from {' '.join(FILE_COMMANDS)}' -F",
             "complete -c patrol -n '__fish_seen_subcommand_from completion' -a 'bash zsh fish'"]
    for name, opts in table.items():
        for opt in opts:
            flag = f"-l {opt[2:]}" if opt.startswith("--") else f"-s {opt[1:]}"
            lines.append(f"complete -c patrol -n '__fish_seen_subcommand_from {name}' {flag}")
    return "\n".join(lines)


