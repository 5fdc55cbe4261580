"""Whether the host had a CPU to spare since the last question: from /proc/stat, or the cgroup's quota."""

from groups_consumer.pipeline.spare_cpu import SpareCpu

CORES = 2


def host(tmp_path, busy: int, idle: int, iowait: int = 0):
    """A /proc/stat whose cores spent ``busy`` jiffies working (user, system, steal) and ``idle`` idle."""
    (tmp_path / "stat").write_text(f"cpu  {busy - 10} 0 5 {idle} {iowait} 0 0 5 0 0\ncpu0 0 0 0 0 0 0 0 0 0 0\n")


def test_a_host_with_half_a_core_idle_has_one_to_spare_and_a_busy_one_does_not(tmp_path, monkeypatch):
    monkeypatch.setattr("os.cpu_count", lambda: CORES)
    host(tmp_path, busy=1000, idle=1000)
    spare = SpareCpu(threshold=0.4, proc=tmp_path, cgroup=tmp_path / "none")
    host(tmp_path, busy=1000 + 140, idle=1000 + 60)  # 200 jiffies = 1 s of 2 cores: 0.6 of a core idle
    assert spare() is True
    host(tmp_path, busy=1140 + 180, idle=1060 + 20)  # 0.2 of a core idle
    assert spare() is False
    host(tmp_path, busy=1320 + 150, idle=1080 + 20, iowait=30)  # waiting for disk is idle too: 0.5
    assert spare() is True


def test_in_a_cgroup_with_a_quota_the_unused_quota_counts(tmp_path):
    cgroup = tmp_path / "cgroup"
    cgroup.mkdir()
    (cgroup / "cpu.max").write_text("150000 100000\n")  # 1.5 cores
    now = [100.0]
    (cgroup / "cpu.stat").write_text("usage_usec 5000000\nuser_usec 4000000\n")
    spare = SpareCpu(threshold=0.4, proc=tmp_path / "none", cgroup=cgroup, clock=lambda: now[0])
    now[0] += 1
    (cgroup / "cpu.stat").write_text("usage_usec 6000000\n")  # 1 core of 1.5 used: 0.5 left
    assert spare() is True
    now[0] += 1
    (cgroup / "cpu.stat").write_text("usage_usec 7300000\n")  # 1.3 used: 0.2 left
    assert spare() is False


def test_without_readings_a_cpu_counts_as_spare(tmp_path):
    spare = SpareCpu(proc=tmp_path / "none", cgroup=tmp_path / "none")
    assert spare() is True and spare() is True
