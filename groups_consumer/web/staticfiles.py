"""Static files of the web process: hashed, compressed names after ``collectstatic``, plain names before."""

from whitenoise.storage import CompressedManifestStaticFilesStorage  # type: ignore[import-untyped]


class StaticFiles(CompressedManifestStaticFilesStorage):  # type: ignore[misc]  # whitenoise ships no types
    """whitenoise's manifest storage, which names files by their hashed copies once ``collectstatic`` has
    written the manifest; without it (the embedded default, tests: whitenoise serves the apps' folders), a file
    keeps its own name instead of failing every page that links to one."""

    def stored_name(self, name: str) -> str:
        """The hashed name from the manifest; the name itself when there is no manifest."""
        return super().stored_name(name) if self.hashed_files else name
