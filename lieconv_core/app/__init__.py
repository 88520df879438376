"""The application: what runs the library on the tasks for a user. The command line
(:mod:`.cli`, the ``lieconv`` command), the training engine and run folders (:mod:`.training`),
checkpoint files and the loading API (:mod:`.checkpoints`, :mod:`.io`), the estimators of your own
point clouds (:mod:`.estimators`), the spring-system evaluations (:mod:`.springs`) and the plots
of evaluations (:mod:`.task_plots`).

The application imports the library and the tasks; nothing in the library or the tasks imports
the application (``tests/test_imports.py`` checks the layering).
"""
