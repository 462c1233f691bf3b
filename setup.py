"""Packages repairml: the `repairml` command, and the code Beam workers and the
component image need (`--setup_file=./setup.py` ships it to Dataflow).

The benchmarks are left out: they run from a checkout (`repairml bench
quality` finds them there), and nothing in production needs them."""

import setuptools

setuptools.setup(
    name='repairml',
    version='0.1.0',
    description='Recommends the parts and repair operations a car needs, '
    'from a workshop diagnostic session; a TFX pipeline and its system.',
    python_requires='>=3.9,<3.11',
    packages=setuptools.find_packages(
        include=['data', 'data.*', 'models', 'models.*', 'pipeline',
                 'pipeline.*', 'preprocessing', 'preprocessing.*', 'serving',
                 'lineage', 'lineage.*', 'collection', 'collection.*',
                 'serving.*']),
    py_modules=['cli', 'kubeflow_runner', 'local_runner'],
    # The UI's page templates, the raw sources' BigQuery DDL, the
    # collection's selection SQL and its report's template.
    package_data={'lineage': ['templates/*.html'],
                  'data': ['raw_sources.sql'],
                  'collection': ['sql/*.sql', 'templates/*.html']},
    # Dependencies are pinned in requirements.lock and installed from it.
    install_requires=[],
    entry_points={'console_scripts': ['repairml = cli:main']},
)
