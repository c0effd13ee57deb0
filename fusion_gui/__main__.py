from fusion_gui.cli import main

raise SystemExit(main())
