"""Everything is in pyproject.toml; this only refuses to build a wheel without the mirror page.
Its JavaScript comes from `make setup` (npm), and a pattern in package-data that matches no file
would otherwise give a wheel whose `stylemirror mirror` cannot work."""

from glob import glob
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py


class BuildPyWithThePage(build_py):
    def run(self):
        # `make setup` installs the package editable before it fetches the page's files.
        if not self.editable_mode:
            for package, patterns in self.package_data.items():
                folder = Path(self.get_package_dir(package))
                missing = [p for p in patterns if not glob(str(folder / p))]
                if missing:
                    raise SystemExit(f"no file matches {', '.join(missing)} in {folder}: "
                                     "run `make setup` before building a wheel (`make wheel` does)")
        super().run()


setup(cmdclass={"build_py": BuildPyWithThePage})
