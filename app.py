"""rem-daq monitor: ``streamlit run app.py`` serves the Live, Trials and Calibration pages on 127.0.0.1.

Thin on purpose: the pages in ``app_pages/`` read trial files through ``daq``
and draw them; nothing here writes a file or talks to an instrument.
The data folder is ``$REMDAQ_DATA_DIR``, else the ``$REMDAQ_STATION`` file's
``data_dir``, else ``./data``. See docs/app.md.
"""

import sys
from pathlib import Path

import streamlit as st

ROOT = Path(__file__).resolve().parent
if str(ROOT) not in sys.path:  # `streamlit run` puts it there; AppTest and other runners may not
    sys.path.insert(0, str(ROOT))

st.set_page_config(page_title="rem-daq monitor", page_icon=":material/local_fire_department:", layout="wide")
st.navigation(
    [
        st.Page("app_pages/live.py", title="Live", icon=":material/monitoring:", default=True),
        st.Page("app_pages/trials.py", title="Trials", icon=":material/table_view:", url_path="trials"),
        st.Page("app_pages/calibration.py", title="Calibration", icon=":material/science:", url_path="calibration"),
    ]
).run()
