#!/usr/bin/env bash
# Checks the documentation, from the repository root:
#
# - every relative link of README.md, ARCHITECTURE.md, docs/*.md and the
#   other README.md files names a file or directory that exists, and every
#   #anchor a heading of the Markdown file it points to (GitHub's rules:
#   lowercase, spaces to "-", punctuation but "-" and "_" dropped, "-1",
#   "-2" after repeated headings); a link to a file other than Markdown may
#   carry only a line anchor (#L10, #L10-L20);
# - every shell block of docs/*.md (fenced as sh, bash, shell or console)
#   runs and exits 0 within BLOCK_TIMEOUT seconds (30), from the repository
#   root, with `bash -euo pipefail`, unless the last non-blank line before
#   its fence is
#
#       <!-- not runnable here: REASON -->
#
#   Mark a block so when it needs what a plain checkout does not have: a
#   cluster, AWS, Docker, a running service, a long build. A plain checkout
#   has the Rust toolchain, kubectl (for `kubectl kustomize`) and PostgreSQL
#   on 127.0.0.1:5432. In a console block only the lines after a "$ " prompt
#   are run.
#
# Prints one line, "docs: N links checked, M shell blocks run, K marked not
# runnable here", and exits 1 after listing every problem found. With
# --dry-run it prints the blocks it would run instead of running them.
set -euo pipefail
cd "$(dirname "$0")/.."

dry_run=0
if [ "${1:-}" = "--dry-run" ]; then
    dry_run=1
fi

DRY_RUN="$dry_run" BLOCK_TIMEOUT="${BLOCK_TIMEOUT:-30}" python3 - <<'PY'
import glob
import os
import re
import signal
import subprocess
import sys
import tempfile
import urllib.parse

ROOT = os.getcwd()
BLOCK_TIMEOUT = int(os.environ["BLOCK_TIMEOUT"])
DRY_RUN = os.environ["DRY_RUN"] == "1"
SHELL_INFOS = {"sh", "bash", "shell", "console"}
MARKER = re.compile(r"^\s*<!--\s*not runnable here:\s*(\S.*?)\s*-->\s*$")
SKIP_DIRS = {".git", "target", "vendor", "node_modules", ".tools"}


def markdown_files():
    files = ["README.md", "ARCHITECTURE.md"] + sorted(glob.glob("docs/*.md"))
    # The project's own README files only: git knows which; tools installed
    # under ignored folders (virtual environments, node_modules) bring theirs.
    tracked = subprocess.run(["git", "ls-files", "--", "*README.md"], capture_output=True,
                             text=True, check=False).stdout.split()
    if not tracked:
        for directory, dirs, names in os.walk("."):
            dirs[:] = sorted(d for d in dirs if d not in SKIP_DIRS and not d.startswith("."))
            if "README.md" in names:
                tracked.append(os.path.join(directory, "README.md"))
    files += sorted(os.path.normpath(f) for f in tracked if os.path.normpath(f) != "README.md")
    return [f for f in files if os.path.isfile(f)]


FENCE = re.compile(r"^( {0,3})(`{3,}|~{3,})\s*([^`]*?)\s*$")


def blocks_and_text(lines):
    """Splits a Markdown file into the lines outside fenced blocks (others
    replaced by "") and the fenced blocks: (line number of the fence, info
    string, body lines)."""
    outside = []
    blocks = []
    fence = None
    for number, line in enumerate(lines, 1):
        if fence is None:
            match = FENCE.match(line)
            if match:
                fence = (match.group(2)[0], len(match.group(2)), number, match.group(3), [])
                outside.append("")
            else:
                outside.append(line)
        else:
            stripped = line.strip()
            if (stripped and set(stripped) == {fence[0]} and len(stripped) >= fence[1]
                    and len(line) - len(line.lstrip(" ")) <= 3):
                blocks.append((fence[2], fence[3], fence[4]))
                fence = None
            else:
                fence[4].append(line)
            outside.append("")
    if fence is not None:
        blocks.append((fence[2], fence[3], fence[4]))
    return outside, blocks


def strip_code_spans(line):
    return re.sub(r"(`+)(.+?)\1", lambda m: " " * len(m.group(0)), line)


def slug(heading):
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # links, images
    text = re.sub(r"<[^>]+>", "", text)  # HTML tags
    text = text.replace("`", "").replace("*", "")
    text = text.strip().lower()
    text = "".join(c for c in text if c.isalnum() or c in "-_ " or c.isspace())
    return re.sub(r"\s", "-", text)


ANCHOR_CACHE = {}


def anchors(path):
    if path not in ANCHOR_CACHE:
        with open(path, encoding="utf-8") as f:
            lines = f.read().split("\n")
        outside, _ = blocks_and_text(lines)
        found = set()
        seen = {}
        for index, line in enumerate(outside):
            heading = None
            match = re.match(r"^ {0,3}#{1,6}\s+(.*?)(?:\s+#+)?\s*$", line)
            if match:
                heading = match.group(1)
            elif (index > 0 and re.match(r"^ {0,3}(=+|-+)\s*$", line)
                  and outside[index - 1].strip()
                  and not outside[index - 1].lstrip().startswith(("|", "-", "*", ">"))):
                heading = outside[index - 1].strip()
            if heading is not None:
                base = slug(heading)
                count = seen.get(base, 0)
                seen[base] = count + 1
                found.add(base if count == 0 else f"{base}-{count}")
            for html in re.finditer(r"""<a\s[^>]*(?:id|name)\s*=\s*["']([^"']+)["']""", line):
                found.add(html.group(1))
        ANCHOR_CACHE[path] = found
    return ANCHOR_CACHE[path]


LINK = re.compile(r"\]\(\s*(<[^>]*>|[^)\s]+)(?:\s+(?:\"[^\"]*\"|'[^']*'))?\s*\)")
REFERENCE = re.compile(r"^ {0,3}\[[^\]]+\]:\s*(<[^>]*>|\S+)")
HREF = re.compile(r"""<a\s[^>]*href\s*=\s*["']([^"']+)["']""")

problems = []
links_checked = 0


def check_link(source, number, target):
    global links_checked
    target = target.strip("<>")
    if re.match(r"^[A-Za-z][A-Za-z0-9+.-]*:", target) or target.startswith("//"):
        return  # an absolute URL: not checked here
    links_checked += 1
    where = f"{source}:{number}: {target}"
    path, _, fragment = target.partition("#")
    path = urllib.parse.unquote(path)
    if path:
        resolved = os.path.normpath(os.path.join(os.path.dirname(source), path))
        if resolved.startswith("..") or os.path.isabs(resolved):
            problems.append(f"{where}: points outside the repository")
            return
        if not os.path.exists(resolved):
            problems.append(f"{where}: no such file")
            return
    else:
        resolved = source
    if not fragment:
        return
    fragment = urllib.parse.unquote(fragment)
    if os.path.isdir(resolved):
        problems.append(f"{where}: an anchor on a directory")
    elif resolved.endswith(".md"):
        if fragment not in anchors(resolved):
            problems.append(f"{where}: no heading #{fragment} in {resolved}")
    elif not re.fullmatch(r"L\d+(-L\d+)?", fragment):
        problems.append(f"{where}: only line anchors (#L10) are checked in {resolved}")


def check_links(path, outside):
    for number, line in enumerate(outside, 1):
        text = strip_code_spans(line)
        for match in LINK.finditer(text):
            check_link(path, number, match.group(1))
        match = REFERENCE.match(text)
        if match:
            check_link(path, number, match.group(1))
        for match in HREF.finditer(text):
            check_link(path, number, match.group(1))


blocks_run = 0
blocks_marked = 0


def run_blocks(path, lines, blocks):
    global blocks_run, blocks_marked
    for number, info, body in blocks:
        words = info.split()
        if not words or words[0].lower() not in SHELL_INFOS:
            continue
        previous = next((lines[i] for i in range(number - 2, -1, -1) if lines[i].strip()), "")
        if MARKER.match(previous):
            blocks_marked += 1
            continue
        if words[0].lower() == "console":
            body = [l[2:] for l in body if l.startswith("$ ")]
        script = "\n".join(body) + "\n"
        blocks_run += 1
        if DRY_RUN:
            print(f"{path}:{number}: would run:" + "".join(f"\n    {l}" for l in script.splitlines()))
            continue
        # A process group of its own, killed whole afterwards: nothing a block
        # started in the background outlives it.
        with tempfile.TemporaryFile(mode="w+") as log:
            process = subprocess.Popen(
                ["bash", "-euo", "pipefail", "-c", script], cwd=ROOT,
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True)
            try:
                process.wait(timeout=BLOCK_TIMEOUT)
                timed_out = False
            except subprocess.TimeoutExpired:
                timed_out = True
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            process.wait()
            log.seek(0)
            output = log.read()
        if timed_out:
            problems.append(f"{path}:{number}: the shell block ran past {BLOCK_TIMEOUT} s "
                            "(mark it <!-- not runnable here: REASON --> if it cannot run here)")
        elif process.returncode != 0:
            tail = output.strip().splitlines()[-10:]
            problems.append(
                f"{path}:{number}: the shell block exited {process.returncode} "
                "(mark it <!-- not runnable here: REASON --> if it cannot run here)"
                + "".join(f"\n    {l}" for l in tail))


def check_markers(path, lines, blocks):
    """A marker must stand right before a shell block's fence."""
    shell_fences = {n for n, info, _ in blocks
                    if info.split() and info.split()[0].lower() in SHELL_INFOS}
    inside = set()
    for number, _, body in blocks:
        inside.update(range(number, number + len(body) + 2))
    for index, line in enumerate(lines):
        if index + 1 in inside or not re.search(r"<!--\s*not runnable here", line):
            continue
        if not MARKER.match(line):
            problems.append(f"{path}:{index + 1}: write the marker as "
                            "<!-- not runnable here: REASON -->")
            continue
        following = next((i for i in range(index + 1, len(lines)) if lines[i].strip()), None)
        if following is None or following + 1 not in shell_fences:
            problems.append(f"{path}:{index + 1}: a not-runnable marker that is not "
                            "right before a shell block")


for path in markdown_files():
    with open(path, encoding="utf-8") as f:
        lines = f.read().split("\n")
    outside, blocks = blocks_and_text(lines)
    check_links(path, outside)
    if path.startswith("docs/"):
        check_markers(path, lines, blocks)
        run_blocks(path, lines, blocks)

sys.stdout.flush()
for problem in problems:
    print(problem, file=sys.stderr)
sys.stderr.flush()
print(f"docs: {links_checked} links checked, {blocks_run} shell blocks run, "
      f"{blocks_marked} marked not runnable here"
      + (f", {len(problems)} problem(s)" if problems else ""))
sys.exit(1 if problems else 0)
PY
