"""The λ-slider explorer served as a web app with Voilà (``regexplain explore``).

* :mod:`regexplain.app.inputs`   turns a decomposition directory into model, decomposition and a subject
* :mod:`regexplain.app.page`     the widget (or the readable error page) the notebook displays
* :mod:`regexplain.app.notebook` writes the one-cell notebook that Voilà serves
* :mod:`regexplain.app.server`   starts and stops Voilà on a loopback port
"""

#: Environment variables through which the launcher tells the app's kernel what to open.
ENV_DECOMPOSITION = "REGEXPLAIN_DECOMPOSITION"
ENV_CHECKPOINT = "REGEXPLAIN_CHECKPOINT"
ENV_DATA = "REGEXPLAIN_DATA"
ENV_CWD = "REGEXPLAIN_CWD"
ENV_SUBJECT = "REGEXPLAIN_SUBJECT"
ENV_BASIS = "REGEXPLAIN_BASIS"
#: A file each preheated kernel appends one line to once its default page is built and it waits for a browser
#: ("<pid> <seconds spent>"): the launcher announces the URL then (:meth:`regexplain.app.server.AppServer.wait_ready`).
ENV_READY = "REGEXPLAIN_READY_FILE"
