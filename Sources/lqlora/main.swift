import LQCLI
LQLoRA.main()
