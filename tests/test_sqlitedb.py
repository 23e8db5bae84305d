"""routers.sqlitedb.connect_wal: many processes opening one new cache file at once all succeed
(a bare `PRAGMA journal_mode=WAL` fails at once with "database is locked" in that race)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_many_processes_create_the_same_caches_at_once(tmp_path):
    script = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(REPO)!r})
        import numpy as np
        from routers.embed import EmbeddingCache
        from routers.pool.cache import ResponseCache
        EmbeddingCache(sys.argv[1]).put({{sys.argv[2]: np.ones(4, np.float32)}})
        ResponseCache(sys.argv[1] + "/replies.sqlite")
    """)
    for trial in range(4):
        d = tmp_path / f"t{trial}"
        procs = [subprocess.Popen([sys.executable, "-c", script, str(d), str(i)], stderr=subprocess.PIPE)
                 for i in range(6)]
        for p in procs:
            _, err = p.communicate(timeout=120)
            assert p.returncode == 0, err.decode()[-1500:]
        from routers.embed import EmbeddingCache
        assert len(EmbeddingCache(d)) == 6
